"""An HTTP/1.1 server on 127.0.0.1 whose answers a test writes byte by byte (anyio: asyncio and trio).

A handler gets each request (method, path, headers, body) and the connection's stream, writes
whatever it likes (a drip, an endless body, garbage, an echo of the headers) and returns whether
the connection stays open for another request.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import attrs


@attrs.define
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int  # which connection it came on (0, 1, ...)
    index: int  # its place on that connection (0 for the first request)


Handler = Callable[[Request, anyio.abc.SocketStream], Awaitable[bool]]


@attrs.define
class HostileServer:
    handler: Handler
    port: int = 0
    requests: list[Request] = attrs.field(factory=list)
    connections: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        connection = self.connections
        self.connections += 1
        async with stream:
            buffer = b""
            index = 0
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        buffer += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])
                }
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    buffer += await stream.receive()
                body, buffer = buffer[:length], buffer[length:]
                request = Request(method, path, headers, body, connection, index)
                self.requests.append(request)
                index += 1
                try:
                    keep_open = await self.handler(request, stream)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the client gave up on this connection
                if not keep_open:
                    return


@asynccontextmanager
async def hostile_server(handler: Handler) -> AsyncIterator[HostileServer]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server = HostileServer(handler, port=listener.extra(anyio.abc.SocketAttribute.local_port))
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server._serve)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


def response(
    status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None, reason: str = "OK"
) -> bytes:
    """One complete HTTP/1.1 response with a Content-Length."""
    fields = {"Content-Type": "application/json", **(headers or {}), "Content-Length": str(len(body))}
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode("latin-1") + b"\r\n" + body


def gzip_bomb(decompressed_bytes: int) -> bytes:
    """A small gzip body that inflates to ``decompressed_bytes`` zeros."""
    return gzip.compress(b"\0" * decompressed_bytes, compresslevel=9)


PAGE = b'{"data": [], "next_token": ""}'
TOKEN_BODY = b'{"access_token": "%s", "expires_in": 3600, "token_type": "Bearer"}'
