"""One error hierarchy: every failure is a typed AmperityError naming what happened (issue item 8).

Refused connections, DNS and TLS failures, dropped connections, protocol garbage, bad gzip, invalid
UTF-8 and absurd token expiries, against real sockets on 127.0.0.1 (aiohttp on asyncio, httpx's own
transport on trio) or httpx.MockTransport where a socket is not the point.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
from typing import Any

import aiohttp
import anyio
import anyio.abc
import httpx
import pytest
from client_support import client_for
from hostile_server import PAGE, Request, hostile_server, response
from ports import refused_port

import amperity_async
from amperity_async import (
    AmperityClient,
    AmperityError,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    Bounds,
    ClientCredentials,
    IssuerToken,
    ManualClock,
    Redactor,
    ResponseValidationError,
    StaticToken,
    Token,
    TokenEndpointUnavailableError,
)
from amperity_async.api.segments import list_segment
from amperity_async.custom.failures import classify
from amperity_async.custom.tokens import jwt_expiry

pytestmark = pytest.mark.anyio

TOKEN = "static-token-for-failure-tests"


def mock_client(handler: Any, **options: Any) -> AmperityClient:
    return client_for("https://app.amperity.com/api", transport=httpx.MockTransport(handler), **options)


async def failure_of(base_url: str, **options: Any) -> APIConnectionError:
    async with client_for(base_url, timeout=10, **options) as client:
        with anyio.fail_after(60), pytest.raises(APIConnectionError) as caught:
            await client.call(list_segment)
    return caught.value


# --- connections: what happened is named --------------------------------------------------------


async def test_a_refused_connection_says_refused() -> None:
    with refused_port() as port:
        error = await failure_of(f"http://127.0.0.1:{port}/api", max_retries=1)
    assert error.kind == "refused" and not isinstance(error, APITimeoutError)
    assert "connection refused" in str(error) and "gave up after 2 attempts" in str(error)
    assert "ConnectTimeout" not in str(error)


async def test_a_name_that_does_not_resolve_says_dns() -> None:
    error = await failure_of("https://nothing-here.invalid/api", max_retries=0)
    assert error.kind == "dns"
    assert "DNS lookup failed" in str(error)


async def test_tls_to_a_server_that_does_not_speak_it_says_tls() -> None:
    async def plain_http(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            await anyio.sleep(1)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, plain_http)
        error = await failure_of(f"https://127.0.0.1:{port}/api", max_retries=0)
        tg.cancel_scope.cancel()
    assert error.kind == "tls"
    assert "TLS failed" in str(error)


async def test_a_connection_dropped_before_the_answer_says_dropped() -> None:
    async def drop(request: Request, stream: anyio.abc.SocketStream) -> bool:
        return False

    async with hostile_server(drop) as server:
        error = await failure_of(server.base_url, max_retries=1)
    assert error.kind == "dropped" and "connection dropped" in str(error)
    assert len(server.requests) == 2, "a GET on a dropped connection is retried"


async def test_protocol_garbage_is_a_typed_error_and_a_get_is_retried() -> None:
    async def garbage(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await stream.send(b"THIS IS NOT HTTP AT ALL\r\n\r\n")
        return False

    async with hostile_server(garbage) as server:
        error = await failure_of(server.base_url, max_retries=2)
    assert error.kind == "protocol" and "invalid HTTP response" in str(error)
    assert len(server.requests) == 3


async def test_an_unreachable_token_endpoint_is_a_connection_error() -> None:
    auth = ClientCredentials("client-1", "client-secret-value")
    with refused_port() as port:
        async with client_for(f"http://127.0.0.1:{port}/api", auth=auth) as client:
            with anyio.fail_after(60), pytest.raises(APIConnectionError) as caught:
                await client.call(list_segment)
    error = caught.value
    assert isinstance(error, TokenEndpointUnavailableError) and isinstance(error, amperity_async.TokenError)
    assert error.kind == "refused" and "connection refused" in str(error)
    assert client.refresher.fetch_count == 4, "retried as the token retry policy says"


# --- bodies the client cannot read ---------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 400])
async def test_bad_gzip_is_a_protocol_error_and_not_retried(status: int) -> None:
    async def bad_gzip(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await stream.send(response(status, b"this is not gzip at all", {"Content-Encoding": "gzip"}))
        return True

    async with hostile_server(bad_gzip) as server:
        error = await failure_of(server.base_url, max_retries=3)
    assert error.kind == "protocol" and "response body could not be decoded" in str(error)
    assert len(server.requests) == 1, "the same bytes would come again"


async def test_invalid_utf8_in_an_error_body_reason_and_headers(anyio_backend: str) -> None:
    async def mangled(request: Request, stream: anyio.abc.SocketStream) -> bool:
        body = b'{"message": "bad \xff\xfe value", "request_id": "r-\xc3\x28"}'
        head = b"HTTP/1.1 400 B\xe4d Request\r\nX-Request-Id: id-\xff\r\nContent-Length: %d\r\n\r\n" % len(
            body
        )
        await stream.send(head + body)
        return True

    async with hostile_server(mangled) as server, client_for(server.base_url) as client:
        with pytest.raises(AmperityError) as caught:
            await client.call(list_segment)
    error = caught.value
    if anyio_backend == "asyncio":
        # httpx-aiohttp cannot re-encode the reason phrase: the answer is unreadable as HTTP.
        assert isinstance(error, APIConnectionError) and error.kind == "protocol"
        assert "UnicodeEncodeError" in str(error)
    else:
        assert isinstance(error, BadRequestError)
        assert error.message == "bad \ufffd\ufffd value" and error.request_id == "r-\ufffd("
    assert repr(error)


@pytest.mark.parametrize("validate", [True, False])
async def test_invalid_utf8_in_a_2xx_body_is_a_validation_error(validate: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=b'{"data": [{"id": "\xff\xfe"}]}', headers={"Content-Type": "application/json"}
        )

    async with mock_client(handler, validate_responses=validate) as client:
        with pytest.raises(ResponseValidationError):
            await client.call(list_segment)


async def test_invalid_utf8_in_an_error_body_over_mock_transport() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, content=b"oops \xff\xfe", headers={"Content-Type": "text/plain; charset=not-a-charset"}
        )

    async with mock_client(handler) as client:
        with pytest.raises(BadRequestError, match="oops \ufffd\ufffd"):
            await client.call(list_segment)


# --- absurd token expiries ---------------------------------------------------------------------


def jwt_with(exp: Any) -> str:
    def part(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'exp': exp})}.c2ln"


@pytest.mark.parametrize("exp", [1e300, 10**400, -1e300, float("nan"), 253402300800])
async def test_absurd_jwt_exp_values_are_handled_and_repr_never_raises(exp: Any) -> None:
    token = jwt_with(exp)
    assert jwt_expiry(token) is None, "an exp outside the years 1970 to 9999 is no expiry"
    source = StaticToken(token)
    assert "expires_at=unknown" in repr(source)
    assert (await source.fetch()).expires_at is None

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=PAGE_JSON)

    async with mock_client(api, auth=source) as client:
        await client.call(list_segment)
        assert repr(client.refresher)


PAGE_JSON = json.loads(PAGE)


@pytest.mark.parametrize("expires_in", ["1e300", str(10**400), "1e20"])
async def test_absurd_expires_in_values_are_handled(expires_in: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/token"):
            body = f'{{"access_token": "tok-absurd-1", "expires_in": {expires_in}}}'
            return httpx.Response(200, content=body.encode())
        return httpx.Response(200, json=PAGE_JSON)

    async with mock_client(handler, auth=ClientCredentials("client-1", "client-secret-value")) as client:
        await client.call(list_segment)
        token = client.refresher.current
        assert token is not None and token.expires_at is None, "an absurd lifetime is no expiry"
        assert repr(client.refresher) and repr(token)


def test_repr_never_raises() -> None:
    for expires_at in (1e300, -1e300, float("inf"), float("nan")):
        assert "Secret('**********')" in repr(Token("some-token-value", expires_at))
    client = AmperityClient(tenant="acme", auth=StaticToken(TOKEN))
    objects: list[Any] = [
        client,
        client.refresher,
        client.http.auth,
        client._transport,
        ClientCredentials("c", "client-secret-value"),
        IssuerToken("k", "issuer-secret-value"),
        Redactor("abcdef"),
        Bounds(),
        ManualClock(),
        APIConnectionError("x", method="GET", url="https://x", kind="dns"),
        APITimeoutError("x", method="GET", url="https://x", bound="deadline", seconds=1),
    ]
    for thing in objects:
        assert repr(thing)


# --- the hierarchy -----------------------------------------------------------------------------


def test_every_error_is_an_amperity_error_importable_from_the_package() -> None:
    from amperity_async.custom import errors

    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, Exception) and not issubclass(value, Warning)
    }
    assert len(defined) == 24
    assert defined <= set(amperity_async.__all__)
    assert all(issubclass(getattr(amperity_async, name), AmperityError) for name in defined)
    assert issubclass(amperity_async.TokenCredentialsRejectedError, AuthenticationError)
    assert issubclass(amperity_async.TokenEndpointUnavailableError, APIConnectionError)
    assert issubclass(amperity_async.TokenEndpointTimeoutError, APITimeoutError)
    assert issubclass(amperity_async.ResponseTooLargeError, AmperityError)


def test_the_classifier_reads_the_chained_exception() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("h", 443, True, True, None, None, None)

    def mapped(cause: BaseException, as_: type[httpx.HTTPError] = httpx.ConnectTimeout) -> BaseException:
        try:
            raise as_("mapped") from cause
        except httpx.HTTPError as exc:
            return exc

    cases = {
        "refused": mapped(aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))),
        "dns": mapped(aiohttp.ClientConnectorError(key, socket.gaierror(-2, "Name or service not known"))),
        "tls": mapped(aiohttp.ClientConnectorCertificateError(key, ssl.SSLCertVerificationError("bad cert"))),
        "timeout": mapped(aiohttp.ConnectionTimeoutError("connect")),
        "dropped": mapped(aiohttp.ServerDisconnectedError()),
    }
    for kind, exc in cases.items():
        assert classify(exc).kind == kind, kind
    assert classify(cases["refused"]).never_sent and not classify(cases["dropped"]).never_sent
    native = {
        "refused": mapped(ConnectionRefusedError(111, "refused"), httpx.ConnectError),
        "dns": mapped(socket.gaierror(-2, "unknown"), httpx.ConnectError),
        "tls": mapped(ssl.SSLError(1, "wrong version number"), httpx.ConnectError),
        "protocol": httpx.RemoteProtocolError("illegal header line"),
    }
    for kind, exc in native.items():
        assert classify(exc).kind == kind, kind
    assert classify(httpx.DecodingError("bad gzip")).transient is False
