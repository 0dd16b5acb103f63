"""Saga persistence (private).

the record model, the SagaStore protocol with its memory reference, the outbox.
"""
