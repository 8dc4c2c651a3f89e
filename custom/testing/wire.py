"""Answers put on the wire the way a struggling server or a broken gateway does.

A slow drip (the body, and the status line and headers if asked, trickled at a set rate), a
connection closed after so many bytes, a 200 whose chunked body never ends, and a body that says
``Content-Encoding: gzip`` without being gzip. Such answers are written to the connection directly
and the connection is closed after them; the handler then returns :class:`AlreadySent`, so aiohttp
writes nothing more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email.utils import formatdate

import attrs
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_ENDLESS_BLOCK = 64 * 1024
_DRIPS_PER_SECOND = 20
_SKIPPED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "date"})


class AlreadySent(web.StreamResponse):
    """The answer went out on the connection already (or the connection is gone): nothing to write."""

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


@attrs.frozen
class Delivery:
    """How one answer travels (the defaults: as any server sends it)."""

    rate: float | None = None
    """Bytes per second of the body (and of the head when ``pace_head``); None: at once."""
    pace_head: bool = False
    cut_after: int | None = None
    """Close the connection after this many bytes, head included."""
    endless: bool = False
    """Replace a 2xx answer with a 200 whose body never ends."""
    bad_gzip: bool = False


def not_gzip(response: web.Response) -> web.Response:
    """The answer under ``Content-Encoding: gzip``: a gzip header, then the plain body, which no
    inflater reads."""
    headers = {k: v for k, v in response.headers.items() if k.lower() not in _SKIPPED_HEADERS}
    headers["Content-Encoding"] = "gzip"
    return web.Response(status=response.status, body=_GZIP_HEADER + _body_of(response), headers=headers)


def _body_of(response: web.Response) -> bytes:
    body = response.body
    return bytes(body) if isinstance(body, (bytes, bytearray, memoryview)) else b""


def _head(response: web.Response, *, length: int | None) -> bytes:
    """Status line and headers; a body of unknown ``length`` goes chunked."""
    lines = [f"HTTP/1.1 {response.status} {response.reason}"]
    lines += [f"{k}: {v}" for k, v in response.headers.items() if k.lower() not in _SKIPPED_HEADERS]
    lines.append(f"Date: {formatdate(usegmt=True)}")
    lines.append("Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _endless_chunks(sample: bytes) -> Iterator[bytes]:
    """A JSON array that never closes, as chunked-encoding frames: ``{"data":[`` then ``sample,`` forever."""
    element = (sample or b"{}") + b","
    block = element * max(1, _ENDLESS_BLOCK // len(element))
    opening = b'{"data":['
    yield b"%x\r\n%s\r\n" % (len(opening), opening)
    frame = b"%x\r\n%s\r\n" % (len(block), block)
    while True:
        yield frame


class Wire:
    """Writes answers slowly, partly or endlessly; remembers the connections it is writing to, so that
    stopping the tenant can end them instead of waiting for a body that never ends."""

    def __init__(self) -> None:
        self._writing: set[asyncio.Transport] = set()

    def abort_all(self) -> None:
        for transport in list(self._writing):
            transport.abort()

    async def deliver(
        self, request: web.Request, response: web.Response, how: Delivery
    ) -> web.StreamResponse:
        if how.bad_gzip:
            response = not_gzip(response)
        endless = how.endless and 200 <= response.status < 300
        if not endless and how.rate is None and how.cut_after is None:
            return response
        if endless:
            ok = web.Response(status=200, headers=response.headers)
            head, body = _head(ok, length=None), _endless_chunks(_body_of(response))
        else:
            content = _body_of(response)
            head, body = _head(response, length=len(content)), iter((content,))
        await self._write(request, head, body, how)
        return AlreadySent()

    async def _write(self, request: web.Request, head: bytes, body: Iterator[bytes], how: Delivery) -> None:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        self._writing.add(transport)
        try:
            pacer = _Pacer(how.rate) if how.rate is not None else None
            budget = how.cut_after
            for data, paced in _pieces(head, body, paced_head=how.pace_head):
                step = pacer.step if pacer is not None and paced else len(data)
                for start in range(0, len(data), step):
                    if transport.is_closing():
                        return
                    piece = data[start : start + step]
                    if budget is not None:
                        piece = piece[:budget]
                        budget -= len(piece)
                    if pacer is not None and paced:
                        await pacer.wait(len(piece))
                    transport.write(piece)
                    await request.writer.drain()
                    if budget == 0:
                        return
        except ConnectionError:
            return  # the client left; nothing to tell anyone
        finally:
            self._writing.discard(transport)
            if not transport.is_closing():
                transport.close()


def _pieces(head: bytes, body: Iterator[bytes], *, paced_head: bool) -> Iterator[tuple[bytes, bool]]:
    """(bytes, whether the pacer holds them back), head first; nothing empty."""
    yield head, paced_head
    for chunk in body:
        if chunk:
            yield chunk, True


class _Pacer:
    """Holds bytes back so that, from the first paced byte on, no more than ``rate`` per second have gone."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.step = max(1, int(rate / _DRIPS_PER_SECOND))
        self._loop = asyncio.get_running_loop()
        self._started: float | None = None
        self._sent = 0

    async def wait(self, size: int) -> None:
        now = self._loop.time()
        if self._started is None:
            self._started = now
        else:
            delay = self._started + self._sent / self.rate - now
            if delay > 0:
                await asyncio.sleep(delay)
        self._sent += size
