"""Opaque, signed page cursors: a forged cursor, or one from another query, is refused.

A cursor holds the query it belongs to, the offset it stands for, and a serial number that lets a
server hand out a new cursor for the same offset (what a hostile list does).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct

_LAYOUT = struct.Struct(">8sQI")
_SIGNATURE_BYTES = 10


class CursorError(ValueError):
    """The cursor cannot be used; the message says why."""


class CursorCodec:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @staticmethod
    def query_digest(query_key: object) -> bytes:
        """What ties a cursor to its operation, scope and filters."""
        return hashlib.blake2b(repr(query_key).encode(), digest_size=8).digest()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def encode(self, digest: bytes, offset: int, serial: int = 0) -> str:
        payload = _LAYOUT.pack(digest, offset, serial & 0xFFFFFFFF)
        return base64.urlsafe_b64encode(payload + self._sign(payload)).rstrip(b"=").decode("ascii")

    def decode(self, token: str, digest: bytes) -> int:
        """The offset a cursor stands for, if this server issued it for this very query."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise CursorError("next_token is not a cursor this API issued") from None
        if len(raw) != _LAYOUT.size + _SIGNATURE_BYTES:
            raise CursorError("next_token is not a cursor this API issued")
        payload, signature = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise CursorError("next_token is not a cursor this API issued")
        cursor_digest, offset, _serial = _LAYOUT.unpack(payload)
        if cursor_digest != digest:
            raise CursorError(
                "next_token belongs to a different query; pass the same operation, path and filters "
                "as the request that returned it"
            )
        return int(offset)
