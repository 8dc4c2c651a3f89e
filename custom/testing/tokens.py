"""Access tokens shaped like Amperity's: JWTs (HS256 here) with an expiry, bound to the tenant."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from .config import Clock

_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenAuthority:
    """Issues tokens and says why one is not acceptable (None when it is)."""

    def __init__(self, secret: bytes, tenant: str, lifetime: float, clock: Clock) -> None:
        self._secret = secret
        self.tenant = tenant
        self.lifetime = lifetime
        self._clock = clock
        self._next_id = 1
        self._revoked_below = 0
        self._known: dict[str, tuple[float, int, str]] = {}

    def issue(self, subject: str, lifetime: float | None = None) -> tuple[str, float]:
        """A new token and the seconds it stays valid."""
        now = self._clock()
        seconds = self.lifetime if lifetime is None else min(lifetime, self.lifetime)
        token_id, self._next_id = self._next_id, self._next_id + 1
        exp = round(now + seconds, 3)
        claims = {
            "iss": "amperity-fake-tenant",
            "sub": subject,
            "tenant": self.tenant,
            "iat": int(now),
            "exp": int(exp) if exp == int(exp) else exp,
            "jti": token_id,
        }
        body = f"{_HEADER}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
        signature = _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())
        token = f"{body}.{signature}"
        if len(self._known) > 100_000:
            self._known.clear()
        self._known[token] = (exp, token_id, self.tenant)
        return token, seconds

    def revoke_all(self) -> None:
        self._revoked_below = self._next_id

    def problem(self, token: str) -> str | None:
        known = self._known.get(token)
        if known is None:
            known = self._verify(token)
            if known is None:
                return "the access token is not valid for this tenant (unknown or malformed token)"
            self._known[token] = known
        exp, token_id, _tenant = known
        if token_id < self._revoked_below:
            return "the access token has been revoked"
        if self._clock() >= exp:
            return "the access token has expired"
        return None

    def _verify(self, token: str) -> tuple[float, int, str] | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = hmac.new(self._secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(parts[2]), expected):
                return None
            claims = json.loads(_unb64(parts[1]))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(claims, dict) or claims.get("tenant") != self.tenant:
            return None
        return float(claims["exp"]), int(claims["jti"]), str(claims["tenant"])
