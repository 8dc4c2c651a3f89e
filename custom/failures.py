"""What went wrong with a request that got no usable answer, read from the exception chain.

httpx-aiohttp maps most aiohttp failures (a refused connection, a DNS or TLS failure, a dropped
connection, a read timeout) to ``httpx.ConnectTimeout``; httpx's own transport chains the socket
error under ``httpx.ConnectError``. ``classify`` looks through the chain for the exception that
says what actually happened, and whether it proves the request never reached the server.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import aiohttp
import aiohttp.http_exceptions
import attrs
import httpx

REFUSED, DNS, TLS, CONNECT, TIMEOUT, DROPPED, PROTOCOL = (
    "refused",
    "dns",
    "tls",
    "connect",
    "timeout",
    "dropped",
    "protocol",
)

# What the library treats as a failure of the exchange (rather than a bug in the caller's code).
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    httpx.HTTPError,
    aiohttp.ClientError,
    OSError,
    UnicodeError,
)

_SUMMARIES = {
    REFUSED: "connection refused",
    DNS: "DNS lookup failed",
    TLS: "TLS failed",
    CONNECT: "could not connect",
    TIMEOUT: "timed out",
    DROPPED: "connection dropped",
    PROTOCOL: "invalid HTTP response",
}


@attrs.frozen
class Failure:
    """A classified failure.

    ``kind``: one of ``refused``, ``dns``, ``tls``, ``connect``, ``timeout``, ``dropped``,
    ``protocol``. ``never_sent``: the failure proves the request never reached the server (so even
    a POST may be sent again). ``transient``: another attempt may succeed. ``detail``: the type and
    text of the exception that tells (not scrubbed: callers scrub before showing it); ``source``:
    that exception's type name; ``summary``: what happened, in a few words for messages.
    """

    kind: str
    detail: str
    never_sent: bool
    transient: bool
    summary: str
    source: str

    @property
    def is_timeout(self) -> bool:
        return self.kind == TIMEOUT


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from, depth first, groups included (trio reports a failed
    connect as an OSError raised from a group of the errors of each address tried)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(reversed(current.exceptions))
        following = current.__cause__ or current.__context__
        if following is not None:
            pending.append(following)


def _failure(
    kind: str, source: BaseException, *, never_sent: bool, transient: bool = True, summary: str = ""
) -> Failure:
    text = str(source).strip()
    detail = f"{type(source).__name__}: {text}" if text else type(source).__name__
    return Failure(kind, detail, never_sent, transient, summary or _SUMMARIES[kind], type(source).__name__)


def _from_os_error(error: OSError, source: BaseException, *, connecting: bool) -> Failure | None:
    if isinstance(error, ConnectionRefusedError):
        return _failure(REFUSED, source, never_sent=True)
    if isinstance(error, socket.gaierror):
        return _failure(DNS, source, never_sent=True)
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return _failure(TLS, source, never_sent=connecting, transient=not connecting)
    return None


def _undecodable(error: BaseException) -> Failure:
    # The server's bytes contradict its Content-Encoding: another attempt would get the same.
    return _failure(
        PROTOCOL, error, never_sent=False, transient=False, summary="response body could not be decoded"
    )


def _from_aiohttp(error: aiohttp.ClientError, chain: list[BaseException]) -> Failure:
    if any(isinstance(inner, aiohttp.http_exceptions.ContentEncodingError) for inner in chain):
        return _undecodable(error)  # aiohttp's own inflating, on the fast path
    dns_error = getattr(aiohttp, "ClientConnectorDNSError", None)
    if dns_error is not None and isinstance(error, dns_error):
        return _failure(DNS, error, never_sent=True)
    if isinstance(error, aiohttp.ClientConnectorCertificateError | aiohttp.ClientConnectorSSLError):
        return _failure(TLS, error, never_sent=True, transient=False)
    if isinstance(error, aiohttp.ClientConnectorError):
        os_error = error.os_error
        return _from_os_error(os_error, error, connecting=True) or _failure(CONNECT, error, never_sent=True)
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return _failure(TIMEOUT, error, never_sent=True)
    if isinstance(error, aiohttp.ServerTimeoutError):
        return _failure(TIMEOUT, error, never_sent=False)
    if isinstance(error, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return _failure(DROPPED, error, never_sent=False)
    return _failure(PROTOCOL, error, never_sent=False)


def _from_httpx(error: httpx.HTTPError, chain: list[BaseException]) -> Failure:
    connecting = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    for inner in chain[1:]:
        if isinstance(inner, OSError):
            found = _from_os_error(inner, error, connecting=connecting)
            if found is not None:
                return found
    if isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout):
        return _failure(TIMEOUT, error, never_sent=True)
    if isinstance(error, httpx.TimeoutException):
        return _failure(TIMEOUT, error, never_sent=False)
    if isinstance(error, httpx.ConnectError):
        return _failure(CONNECT, error, never_sent=True)
    if isinstance(error, httpx.UnsupportedProtocol):
        return _failure(CONNECT, error, never_sent=True, transient=False)
    if isinstance(error, httpx.RemoteProtocolError) and "disconnected" in str(error).lower():
        return _failure(DROPPED, error, never_sent=False)
    if isinstance(error, httpx.NetworkError):
        return _failure(DROPPED, error, never_sent=False)
    if isinstance(error, httpx.DecodingError):
        return _undecodable(error)
    return _failure(PROTOCOL, error, never_sent=False)


def classify(exc: BaseException) -> Failure:
    """What ``exc`` (one of ``NETWORK_ERRORS``, raised while sending or reading) says happened."""
    chain = list(_chain(exc))
    for inner in chain:
        if isinstance(inner, aiohttp.ClientError):
            return _from_aiohttp(inner, chain)
    if isinstance(exc, httpx.HTTPError):
        return _from_httpx(exc, chain)
    if isinstance(exc, OSError):
        return _from_os_error(exc, exc, connecting=False) or _failure(DROPPED, exc, never_sent=False)
    # A header value or reason phrase that cannot be re-encoded, and the like.
    return _failure(PROTOCOL, exc, never_sent=False)
