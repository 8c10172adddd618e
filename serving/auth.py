"""API-key authentication: `Authorization: Bearer <key>` checked against the configured keys.

The caller's identity (`Principal.owner`) is a hash of the key, never the key itself, so the
voice registry and logs never hold secrets. With no keys configured authentication is off and
every caller is the same anonymous owner. Voices are scoped to their owner: another key asking
for a voice it does not own gets the same 404 as for a voice that does not exist.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from serving.errors import UnauthorizedError

ANONYMOUS_OWNER = "anonymous"


@dataclass(frozen=True)
class Principal:
    """Who is calling: `owner` scopes voices, `rate_key` buckets rate limits."""

    owner: str
    authenticated: bool

    @property
    def rate_key(self) -> str:
        return self.owner


def owner_id(key: str) -> str:
    """Stable, non-reversible owner id for an API key."""
    return "key_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


class ApiKeyAuth:
    """Validates bearer keys in constant time per configured key."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode("utf-8") for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def authenticate(self, authorization: str | None) -> Principal:
        """Principal for an `Authorization` header value; raises `UnauthorizedError` (401)."""
        if not self.enabled:
            return Principal(owner=ANONYMOUS_OWNER, authenticated=False)
        scheme, _, token = (authorization or "").strip().partition(" ")
        if authorization and scheme.lower() != "bearer":
            raise UnauthorizedError("Malformed Authorization header: expected 'Bearer <key>'.")
        return self.authenticate_token(token.strip() or None)

    def authenticate_token(self, token: str | None) -> Principal:
        """Principal for a bare key (None = no key sent); raises `UnauthorizedError` (401)."""
        if not self.enabled:
            return Principal(owner=ANONYMOUS_OWNER, authenticated=False)
        if not token:
            raise UnauthorizedError("Missing or malformed API key: send 'Authorization: Bearer <key>'.")
        candidate = token.encode("utf-8")
        # compare against every key so timing does not reveal which prefix matched
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        if not matched:
            raise UnauthorizedError("Invalid API key.")
        return Principal(owner=owner_id(token), authenticated=True)
