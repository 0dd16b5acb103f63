"""The orchestrator side of command steps (private).

The reply consumer that resumes waiting sagas, and the outbox relay wiring.
"""
