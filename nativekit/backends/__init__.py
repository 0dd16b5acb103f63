"""Connections to infrastructure, built from :class:`~nativekit.settings.Settings`.

Only modules under ``nativekit.backends`` (and a component's own backend
modules) import ``redis`` or ``aiokafka``; driver errors are translated to
nativekit errors at this boundary.
"""
