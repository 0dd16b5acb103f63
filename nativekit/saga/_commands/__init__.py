"""The orchestrator side of command steps (private).

the reply consumer that resumes waiting sagas, and the outbox relay wiring.
"""
