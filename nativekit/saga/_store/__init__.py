"""Saga persistence (private).

The record model, the SagaStore protocol with its memory reference, the outbox.
"""
