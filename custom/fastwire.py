"""Requests straight over aiohttp, below the transport's retry loop: the wire of the fast path.

httpx's request and response objects cost more per page than everything else of a call together
(URL parsing and merging, header objects, a decoder chain per body), though the client already knows
the URL and headers it sends. ``AiohttpWire`` sends a ``WireRequest`` (method, a ready URL, a plain
header dict, the body bytes) on the client's aiohttp session and reads the answer into an
``Answer``. It is a ``attempt.Wire``: ``AmperityTransport.exchange`` drives it with the same limits,
bounds, retries and statistics as every httpx request, and its failures are classified by
``failures`` like httpx-aiohttp's. aiohttp inflates gzip and deflate bodies; the size cap counts the
inflated bytes as they stream in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import aiohttp
import httpx
import yarl
from multidict import CIMultiDictProxy

from .attempt import AttemptFailed, BodyTooLarge
from .failures import NETWORK_ERRORS, classify

# Each attempt is bounded as a whole by the transport (attempt.bounded): no timers of aiohttp's own.
_NO_TIMEOUTS = aiohttp.ClientTimeout()
# Headers that describe the bytes on the wire, not the inflated body an Answer holds.
_WIRE_FORMAT_HEADERS = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


class _Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...


class Received(Protocol):
    """What a call gets back, from either path: an ``Answer`` or an ``httpx.Response``."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> _Headers: ...

    @property
    def content(self) -> bytes: ...


class WireRequest:
    """A request as the fast path sends it: nothing left to parse, merge or normalize."""

    __slots__ = ("body", "headers", "method", "url")

    def __init__(
        self, method: str, url: yarl.URL, headers: dict[str, str], body: bytes | None = None
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"WireRequest({self.method} {self.url.path})"


class Answer:
    """A response received over aiohttp: status, headers, and the whole body once read."""

    __slots__ = ("_raw", "content", "headers", "raw_headers", "reason", "request", "status_code")

    def __init__(self, raw: aiohttp.ClientResponse, request: WireRequest) -> None:
        self._raw: aiohttp.ClientResponse | None = raw
        self.request = request
        self.status_code = raw.status
        self.reason = raw.reason or ""
        self.headers: CIMultiDictProxy[str] = raw.headers
        self.raw_headers: tuple[tuple[bytes, bytes], ...] = raw.raw_headers
        self.content = b""

    def as_httpx(self) -> httpx.Response:
        """The same answer as an ``httpx.Response`` (typed errors carry one), its body as read."""
        headers = [(k, v) for k, v in self.raw_headers if k.lower() not in _WIRE_FORMAT_HEADERS]
        request = self.request
        return httpx.Response(
            self.status_code,
            headers=headers,
            content=self.content,
            request=httpx.Request(request.method, str(request.url), headers=request.headers),
            extensions={"reason_phrase": self.reason.encode("latin-1", "replace")},
        )

    def __repr__(self) -> str:
        return f"Answer({self.status_code}, {len(self.content)} bytes)"


def as_httpx_response(received: Received) -> httpx.Response:
    """``received`` as an ``httpx.Response``, whichever path it came by."""
    if isinstance(received, Answer):
        return received.as_httpx()
    assert isinstance(received, httpx.Response)
    return received


class AiohttpWire:
    """An ``attempt.Wire`` over the aiohttp session ``session()`` returns (made on first use)."""

    __slots__ = ("_session",)

    def __init__(self, session: Callable[[], aiohttp.ClientSession]) -> None:
        self._session = session

    async def send(self, request: WireRequest) -> Answer:
        try:
            raw = await self._session().request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body,
                allow_redirects=False,
                auto_decompress=True,
                timeout=_NO_TIMEOUTS,
            )
        except NETWORK_ERRORS as exc:
            raise AttemptFailed(classify(exc), cause=exc) from exc
        return Answer(raw, request)

    async def read_body(self, answer: Answer, max_bytes: int) -> None:
        """Read the whole (inflated) body into ``answer.content``, at most ``max_bytes``.

        On any failure (cancellation included) the connection is closed, never reused.
        """
        raw = answer._raw
        assert raw is not None, "an answer's body is read once"
        declared = raw.content_length
        if declared is not None and declared > max_bytes:
            raw.close()
            raise BodyTooLarge(max_bytes)
        try:
            if declared is not None and "Content-Encoding" not in raw.headers:
                # Exactly the declared bytes, and no more than the cap.
                answer.content = await raw.read()
            else:
                # Inflated or of unknown length: counted while it streams in, so that a gzip bomb
                # or an endless body stops at the cap.
                chunks: list[bytes] = []
                size = 0
                stream = raw.content
                while chunk := await stream.readany():
                    size += len(chunk)
                    if size > max_bytes:
                        raise BodyTooLarge(max_bytes)
                    chunks.append(chunk)
                answer.content = b"".join(chunks)
            raw.release()
        except NETWORK_ERRORS as exc:
            raw.close()
            raise AttemptFailed(classify(exc), cause=exc) from exc
        except BaseException:
            raw.close()
            raise
        answer._raw = None

    async def close(self, answer: Answer) -> None:
        """Hand the connection back (closed, since the body was not read)."""
        raw = answer._raw
        if raw is not None:
            answer._raw = None
            raw.release()

    def status(self, answer: Answer) -> int:
        return answer.status_code

    def header(self, answer: Answer, name: str) -> str | None:
        return answer.headers.get(name)

    def deprecation(self, answer: Answer) -> tuple[str | None, str | None] | None:
        headers = answer.headers
        deprecation, sunset = headers.get("Deprecation"), headers.get("Sunset")
        return None if deprecation is None and sunset is None else (deprecation, sunset)
