"""Real keys and a real JWKS endpoint for the auth tests: an HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://id.example.test/"
AUDIENCE = "orders-api"


@dataclass
class SigningKey:
    """A private key generated for one test run, with its public JWK."""

    kid: str
    alg: str
    private: Any

    @property
    def jwk(self) -> dict[str, Any]:
        """The public half as a JWK."""
        algorithm = jwt.get_algorithm_by_name(self.alg)
        public = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "use": "sig", "alg": self.alg}

    def sign(self, claims: dict[str, Any] | None = None, **header: Any) -> str:
        """A token with sensible claims (sub, aud, iss, exp in 5 min) updated by ``claims``."""
        now = int(time.time())
        body = {"sub": "alice", "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 300}
        body.update(claims or {})
        body = {k: v for k, v in body.items() if v is not None}
        headers = {"kid": self.kid, **header}
        return jwt.encode(body, self.private, algorithm=self.alg, headers=headers)


def rsa_key(kid: str = "rsa-1") -> SigningKey:
    """A fresh 2048-bit RSA key for RS256."""
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str = "ec-1") -> SigningKey:
    """A fresh P-256 key for ES256."""
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


@dataclass
class JWKSServer:
    """A JWKS document served over HTTP; change ``keys`` to rotate, read ``hits``."""

    url: str
    keys: list[dict[str, Any]] = field(default_factory=list)
    hits: int = 0
    down: bool = False


@contextmanager
def jwks_server(*keys: SigningKey) -> Iterator[JWKSServer]:
    """Serve ``keys`` at http://127.0.0.1:PORT/jwks.json from a thread, stopped on exit."""
    state = JWKSServer("", [k.jwk for k in keys])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            if state.down or self.path != "/jwks.json":
                self.send_error(503 if state.down else 404)
                return
            body = json.dumps({"keys": state.keys}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
