"""Consuming (private).

The group consumer, per-key lanes, the handling pipeline with retries and dead letters,
dedup marks, committable offsets, consumer metrics.
"""
