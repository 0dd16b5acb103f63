"""Running sagas (private).

the runner of one instance, the runtime (start, wait, recovery, leases), metrics, the
capability wiring.
"""
