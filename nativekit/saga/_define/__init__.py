"""Saga definitions (private).

sagas, steps, command steps and retry policies, as users declare them.
"""
