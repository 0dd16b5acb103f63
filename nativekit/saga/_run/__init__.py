"""Running sagas (private).

The runner of one instance, the runtime (start, wait, recovery, leases), metrics, the
capability wiring.
"""
