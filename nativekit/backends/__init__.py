"""Backends: the drivers of each engine, one subpackage per engine.

``nativekit.backends.redis`` (redis-py) and ``nativekit.backends.kafka`` (aiokafka)
are the only modules of nativekit that import a driver; they translate driver
errors into nativekit errors. The memory backends live beside the protocols
they implement. Which backend a service uses is chosen by URL in one place
(:class:`Backends`); capabilities only see the protocols.
"""

from nativekit.backends._select import Backends

__all__ = ["Backends"]
