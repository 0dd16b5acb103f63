"""The one error a peer call raises when no response came back."""

from __future__ import annotations

from nativekit.errors import NativekitError


class PeerError(NativekitError, ConnectionError):
    """A call to another service got no response: connection refused, timeout, reset,
    or the peer's circuit breaker is open. Its message names the peer and the request.

    Attributes:
        peer: the peer's name (``svc.http_client(..., peer=)``, default its host).
        method: the request method.
        url: the request URL.
        uncertain: the peer may have applied the request (it got no answer, or answered
            5xx); a saga step failing with it is compensated (see docs/sagas.md).
    """

    def __init__(
        self, message: str, *, peer: str, method: str, url: str, uncertain: bool = True
    ) -> None:
        super().__init__(message)
        self.peer = peer
        self.method = method
        self.url = url
        self.uncertain = uncertain


class CircuitOpen(PeerError):
    """The peer failed repeatedly; calls fail at once until its breaker lets a trial through.

    Nothing was sent, so the request was certainly not applied (``uncertain`` is False).
    """

    def __init__(self, message: str, *, peer: str, method: str, url: str) -> None:
        super().__init__(message, peer=peer, method=method, url=url, uncertain=False)
