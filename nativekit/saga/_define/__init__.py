"""Saga definitions (private).

Sagas, steps, command steps and retry policies, as users declare them.
"""
