"""Token sources, the single-flight token refresher and the 401 refresh-and-replay auth flow."""

from __future__ import annotations

import base64
import json
import logging
import random
import urllib.parse

import anyio
import httpx
import pytest
import respx

from amperity_async.custom.auth import AmperityAuth
from amperity_async.custom.calls import Bounds
from amperity_async.custom.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    TokenCredentialsRejectedError,
    TokenEndpointError,
    TokenEndpointUnavailableError,
    TokenError,
    TokenExpiredError,
)
from amperity_async.custom.refresher import TokenRefresher
from amperity_async.custom.retry import RetryPolicy
from amperity_async.custom.secrets import Secret
from amperity_async.custom.tokens import (
    ClientCredentials,
    IssuerToken,
    StaticToken,
    Token,
    TokenEndpointContext,
    TokenSource,
    jwt_expiry,
)

pytestmark = pytest.mark.anyio

BASE = "https://app.amperity.com/api"
OAUTH_URL = f"{BASE}/v0/oauth2/token"
API_URL = f"{BASE}/segments"
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
CLIENT_SECRET = "client-secret-7f3a9c"
ISSUER_SECRET = "issuer-token-91bd02"


class FakeClock:
    """A clock that moves only when told to, or by the length of a sleep: sleeps return at once
    (after a checkpoint, like a real sleep) and their delays are recorded."""

    def __init__(self, wall: float = T0) -> None:
        self.monotonic = 0.0
        self.wall_start = wall
        self.delays: list[float] = []

    def now(self) -> float:
        return self.monotonic

    def time(self) -> float:
        return self.wall_start + self.monotonic

    def set_time(self, wall: float) -> None:
        self.monotonic = wall - self.wall_start

    async def sleep_until(self, deadline: float) -> None:
        self.delays.append(max(0.0, deadline - self.monotonic))
        self.monotonic = max(self.monotonic, deadline)
        await anyio.lowlevel.checkpoint()

    def cancel_at(self, deadline: float) -> anyio.CancelScope:
        scope = anyio.CancelScope()
        if deadline <= self.monotonic:
            scope.cancel()
        return scope


def token_retry(max_retries: int = 3) -> RetryPolicy:
    return RetryPolicy(max_retries=max_retries, backoff_base=0.5, backoff_cap=30.0, max_retry_after=30.0)


def make_jwt(exp: float | None = None, **claims: object) -> str:
    def encode(part: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    payload: dict[str, object] = dict(claims)
    if exp is not None:
        payload["exp"] = exp
    return f"{encode({'alg': 'RS256', 'typ': 'JWT'})}.{encode(payload)}.c2lnbmF0dXJl"


def endpoint_context(router: respx.Router, base_url: str = BASE) -> TokenEndpointContext:
    return TokenEndpointContext(
        base_url=base_url,
        tenant="acme",
        transport=httpx.MockTransport(router.async_handler),
        bounds=Bounds(timeout=5.0),
    )


def oauth_response(access_token: str, expires_in: float = 3600) -> httpx.Response:
    return httpx.Response(
        200, json={"access_token": access_token, "expires_in": expires_in, "token_type": "Bearer"}
    )


class TokenServer:
    """An OAuth token endpoint issuing tok-1, tok-2, ...; each request can be held until released."""

    def __init__(self, expires_in: float = 3600) -> None:
        self.expires_in = expires_in
        self.issued: list[str] = []
        self.received = 0
        self.gate: anyio.Event | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received += 1
        if self.gate is not None:
            await self.gate.wait()
        token = f"tok-{len(self.issued) + 1}"
        self.issued.append(token)
        return oauth_response(token, self.expires_in)


class ControlledSource:
    """A user-defined token source (no base class) whose fetches can be held and made to fail."""

    def __init__(self, clock: FakeClock, lifetime: float | None = 3600) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls = 0
        self.gate: anyio.Event | None = None
        self.fail_with: list[Exception] = []

    async def fetch(self) -> Token:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with:
            raise self.fail_with.pop(0)
        expires_at = None if self.lifetime is None else self.clock.time() + self.lifetime
        return Token(f"custom-{self.calls}", expires_at)


async def settle() -> None:
    """Let every runnable task reach its next blocking point."""
    for _ in range(50):
        await anyio.lowlevel.checkpoint()


# --- Secret and Token ----------------------------------------------------------------------------


def test_secret_redacts_and_compares_by_value() -> None:
    secret = Secret("hunter2")
    assert repr(secret) == "Secret('**********')"
    assert str(secret) == "Secret('**********')"
    assert f"{secret}" == "Secret('**********')"
    assert secret.get_secret_value() == "hunter2"
    assert secret == Secret("hunter2")
    assert secret != Secret("hunter3")
    assert secret != "hunter2"
    assert hash(secret) == hash(Secret("hunter2"))
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[arg-type]


def test_token_wraps_plain_strings_and_reports_time_left() -> None:
    token = Token("abc", expires_at=T0 + 90)
    assert token.access_token == Secret("abc")
    assert token.expires_in(T0) == 90
    assert token.expires_in(T0 + 100) == -10
    assert Token(Secret("abc")).expires_in(T0) is None
    assert token == Token(Secret("abc"), T0 + 90)
    assert "abc" not in repr(token)


def test_jwt_expiry_reads_exp_without_verifying() -> None:
    assert jwt_expiry(make_jwt(T0 + 5, sub="x")) == T0 + 5
    assert jwt_expiry(make_jwt(None, sub="x")) is None
    assert jwt_expiry(make_jwt(True)) is None
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.%%%.c") is None
    assert jwt_expiry("a." + base64.urlsafe_b64encode(b"[1, 2]").decode() + ".c") is None


# --- StaticToken --------------------------------------------------------------------------------


async def test_static_token_is_valid_until_its_jwt_exp_then_raises() -> None:
    clock = FakeClock()
    jwt = make_jwt(T0 + 600)
    source = StaticToken(jwt, clock=clock)
    assert source.expires_at == T0 + 600
    assert isinstance(source, TokenSource)
    token = await source.fetch()
    assert token == Token(jwt, T0 + 600)
    clock.set_time(T0 + 600)
    with pytest.raises(TokenExpiredError) as caught:
        await source.fetch()
    message = str(caught.value)
    assert "expired at 2027-01-15T08:10:00Z (0 s ago)" in message
    assert "ClientCredentials" in message
    assert jwt not in message


async def test_static_token_that_is_not_a_jwt_never_expires_locally() -> None:
    clock = FakeClock()
    source = StaticToken("opaque-token", clock=clock)
    assert source.expires_at is None
    clock.set_time(clock.time() + 10**9)
    assert (await source.fetch()).access_token.get_secret_value() == "opaque-token"


def test_static_token_input_checks() -> None:
    assert StaticToken("Bearer abc.def.ghi")._token.access_token.get_secret_value() == "abc.def.ghi"
    with pytest.raises(ConfigurationError, match="empty token"):
        StaticToken("  ")
    with pytest.raises(ConfigurationError, match="whitespace"):
        StaticToken("abc def")
    with pytest.raises(ConfigurationError, match="str"):
        StaticToken(None)  # type: ignore[arg-type]


async def test_expired_static_token_is_never_sent() -> None:
    clock = FakeClock()
    api = respx.Router()
    route = api.get(API_URL).mock(return_value=httpx.Response(200, json={"data": []}))
    refresher = TokenRefresher(StaticToken(make_jwt(T0 - 1), clock=clock), clock=clock)
    async with httpx.AsyncClient(
        auth=AmperityAuth(refresher), transport=httpx.MockTransport(api.async_handler)
    ) as client:
        with pytest.raises(TokenExpiredError):
            await client.get(API_URL)
        with pytest.raises(TokenExpiredError):
            await client.get(API_URL)
    assert route.call_count == 0


async def test_static_token_expires_while_in_use() -> None:
    clock = FakeClock()
    api = respx.Router()
    route = api.get(API_URL).mock(return_value=httpx.Response(200, json={"data": []}))
    refresher = TokenRefresher(StaticToken(make_jwt(T0 + 300), clock=clock), clock=clock, leeway=60)
    async with httpx.AsyncClient(
        auth=AmperityAuth(refresher), transport=httpx.MockTransport(api.async_handler)
    ) as client:
        assert (await client.get(API_URL)).status_code == 200
        clock.set_time(T0 + 299)  # within the leeway: the same token is re-read, still valid
        assert (await client.get(API_URL)).status_code == 200
        clock.set_time(T0 + 300)
        with pytest.raises(TokenExpiredError):
            await client.get(API_URL)
    assert route.call_count == 2


async def test_401_with_a_static_token_is_returned_without_a_replay() -> None:
    api = respx.Router()
    route = api.get(API_URL).mock(
        return_value=httpx.Response(401, json={"status": 401, "message": "invalid"})
    )
    refresher = TokenRefresher(StaticToken("opaque-token"))
    async with httpx.AsyncClient(
        auth=AmperityAuth(refresher), transport=httpx.MockTransport(api.async_handler)
    ) as client:
        response = await client.get(API_URL)
    assert response.status_code == 401
    assert route.call_count == 1
    assert refresher.fetch_count == 2  # the first token, and the refresh that found no other one


# --- ClientCredentials --------------------------------------------------------------------------


async def test_client_credentials_request_and_expiry() -> None:
    clock = FakeClock()
    router = respx.Router()
    route = router.post(OAUTH_URL).mock(return_value=oauth_response("tok-1", 3600))
    source = ClientCredentials("my-client", CLIENT_SECRET, clock=clock)
    token = await source.fetch(endpoint_context(router))
    assert token == Token("tok-1", T0 + 3600)
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.headers["X-Amperity-Tenant"] == "acme"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in request.headers
    assert urllib.parse.parse_qs(request.content.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": ["my-client"],
        "client_secret": [CLIENT_SECRET],
    }


async def test_client_credentials_token_url_and_jwt_expiry() -> None:
    router = respx.Router()
    jwt = make_jwt(T0 + 1234)
    route = router.post("https://auth.example.com/token").mock(
        return_value=httpx.Response(200, json={"access_token": jwt, "token_type": "bearer"})
    )
    source = ClientCredentials("c", CLIENT_SECRET, token_url="https://auth.example.com/token")
    token = await source.fetch(endpoint_context(router))
    assert token.expires_at == T0 + 1234
    assert route.call_count == 1


async def test_client_credentials_without_expiry_information() -> None:
    router = respx.Router()
    router.post(OAUTH_URL).mock(return_value=httpx.Response(200, json={"access_token": "opaque"}))
    token = await ClientCredentials("c", CLIENT_SECRET).fetch(endpoint_context(router))
    assert token.expires_at is None


async def test_client_credentials_4xx_raises_at_once_without_the_secret() -> None:
    router = respx.Router()
    route = router.post(OAUTH_URL).mock(
        return_value=httpx.Response(
            401, json={"error": "invalid_client", "error_description": f"bad secret {CLIENT_SECRET}"}
        )
    )
    clock = FakeClock()
    refresher = TokenRefresher(
        ClientCredentials("c", CLIENT_SECRET), context=endpoint_context(router), clock=clock
    )
    with pytest.raises(AuthenticationError) as caught:
        await refresher.get()
    error = caught.value
    assert isinstance(error, TokenCredentialsRejectedError) and isinstance(error, TokenEndpointError)
    assert not isinstance(error, TokenEndpointUnavailableError)
    assert error.status_code == 401
    assert error.token_url == OAUTH_URL
    assert str(error) == f"token endpoint {OAUTH_URL} answered 401: invalid_client: bad secret **********"
    assert CLIENT_SECRET not in str(error) and CLIENT_SECRET not in repr(error)
    assert route.call_count == 1
    assert refresher.fetch_count == 1
    assert clock.delays == []


async def test_token_endpoint_5xx_429_and_transport_errors_are_retried_with_backoff() -> None:
    router = respx.Router()
    route = router.post(OAUTH_URL).mock(
        side_effect=[
            httpx.Response(503, text="unavailable"),
            httpx.ConnectError("connection refused"),
            httpx.Response(429, headers={"Retry-After": "7"}),
            oauth_response("tok-1"),
        ]
    )
    clock = FakeClock()
    refresher = TokenRefresher(
        ClientCredentials("c", CLIENT_SECRET),
        context=endpoint_context(router),
        clock=clock,
        retry=token_retry(),
        random=random.Random(7).random,
    )
    token = await refresher.get()
    assert token.access_token.get_secret_value() == "tok-1"
    assert route.call_count == 4
    assert refresher.fetch_count == 4
    expected = random.Random(7)
    assert clock.delays == [expected.uniform(0, 0.5), expected.uniform(0, 1.0), 7.0]
    assert 0 <= clock.delays[0] <= 0.5 and 0 <= clock.delays[1] <= 1.0


async def test_token_endpoint_retries_are_bounded() -> None:
    router = respx.Router()
    route = router.post(OAUTH_URL).mock(side_effect=httpx.ReadTimeout("timed out"))
    clock = FakeClock()
    refresher = TokenRefresher(
        ClientCredentials("c", CLIENT_SECRET),
        context=endpoint_context(router),
        clock=clock,
        retry=token_retry(max_retries=2),
    )
    with pytest.raises(TokenEndpointUnavailableError) as caught:
        await refresher.get()
    assert isinstance(caught.value, APITimeoutError) and isinstance(caught.value, APIConnectionError)
    assert str(caught.value) == f"token endpoint {OAUTH_URL} failed: timed out (ReadTimeout: timed out)"
    assert route.call_count == 3
    assert len(clock.delays) == 2
    assert all(0 <= delay <= 0.5 * 2**n for n, delay in enumerate(clock.delays))


async def test_a_retry_after_beyond_the_cap_fails_the_token_request_at_once() -> None:
    router = respx.Router()
    route = router.post(OAUTH_URL).mock(
        side_effect=[httpx.Response(503, headers={"Retry-After": "3600"}), oauth_response("tok-1")]
    )
    clock = FakeClock()
    refresher = TokenRefresher(
        ClientCredentials("c", CLIENT_SECRET),
        context=endpoint_context(router),
        clock=clock,
        retry=token_retry(),
    )
    with pytest.raises(TokenEndpointUnavailableError) as caught:
        await refresher.get()
    assert caught.value.retry_after == 3600.0 and caught.value.status_code == 503
    assert route.call_count == 1 and clock.delays == []
    assert (await refresher.get()).access_token.get_secret_value() == "tok-1"


@pytest.mark.parametrize(
    ("response", "complaint"),
    [
        (httpx.Response(200, text="<html>ok</html>"), "not JSON"),
        (httpx.Response(200, json=["tok"]), "JSON list, not an object"),
        (httpx.Response(200, json={"token_type": "Bearer"}), "no 'access_token' string"),
        (httpx.Response(200, json={"access_token": ""}), "no 'access_token' string"),
        (
            httpx.Response(200, json={"access_token": "t", "expires_in": "soon"}),
            "'expires_in' must be a positive",
        ),
        (httpx.Response(200, json={"access_token": "t", "expires_in": 0}), "'expires_in' must be a positive"),
        (
            httpx.Response(200, json={"access_token": "t", "token_type": "mac"}),
            "token_type 'mac' is not supported",
        ),
    ],
)
async def test_malformed_oauth_responses_name_what_is_missing(
    response: httpx.Response, complaint: str
) -> None:
    router = respx.Router()
    router.post(OAUTH_URL).mock(return_value=response)
    with pytest.raises(TokenEndpointError, match=complaint) as caught:
        await ClientCredentials("c", CLIENT_SECRET).fetch(endpoint_context(router))
    assert OAUTH_URL in str(caught.value)


async def test_endpoint_sources_need_a_context() -> None:
    with pytest.raises(ConfigurationError, match="needs to know where it is"):
        await ClientCredentials("c", CLIENT_SECRET).fetch()
    with pytest.raises(ConfigurationError, match="IssuerToken requests tokens"):
        await IssuerToken("key", ISSUER_SECRET).fetch()
    with pytest.raises(ConfigurationError, match="TokenEndpointContext"):
        TokenRefresher(ClientCredentials("c", CLIENT_SECRET))
    TokenRefresher(StaticToken("abc"))  # a fixed token needs no endpoint


def test_credentials_input_checks() -> None:
    with pytest.raises(ConfigurationError, match="client_id"):
        ClientCredentials("", CLIENT_SECRET)
    with pytest.raises(ConfigurationError, match="client_secret"):
        ClientCredentials("c", "")
    with pytest.raises(ConfigurationError, match="must use https"):
        ClientCredentials("c", CLIENT_SECRET, token_url="http://auth.example.com/token")
    with pytest.raises(ConfigurationError, match="must not carry user info"):
        ClientCredentials("c", CLIENT_SECRET, token_url="https://user:pw@auth.example.com/token")
    assert (
        ClientCredentials("c", "s", token_url="http://127.0.0.1:8080/t").token_url
        == "http://127.0.0.1:8080/t"
    )
    assert ClientCredentials("c", "s", token_url="http://localhost/t").token_url == "http://localhost/t"
    with pytest.raises(ConfigurationError, match="api_key_id"):
        IssuerToken(" ", ISSUER_SECRET)
    with pytest.raises(ConfigurationError, match="issuer_token"):
        IssuerToken("key", "")
    with pytest.raises(ConfigurationError, match="lifetime"):
        IssuerToken("key", ISSUER_SECRET, lifetime=0)


async def test_plain_http_base_url_is_refused_for_token_requests() -> None:
    router = respx.Router()
    with pytest.raises(ConfigurationError, match="must use https"):
        await ClientCredentials("c", CLIENT_SECRET).fetch(
            endpoint_context(router, "http://app.amperity.com/api")
        )


# --- IssuerToken --------------------------------------------------------------------------------

ISSUER_URL = f"{BASE}/v0/admin/api-keys/key%2F1/tokens"


async def test_issuer_token_request() -> None:
    clock = FakeClock()
    router = respx.Router()
    route = router.post(ISSUER_URL).mock(return_value=httpx.Response(200, json={"token": "issued"}))
    token = await IssuerToken("key/1", ISSUER_SECRET, lifetime=900, clock=clock).fetch(
        endpoint_context(router)
    )
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {ISSUER_SECRET}"
    assert request.headers["X-Amperity-Tenant"] == "acme"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"expires-at": "2027-01-15T08:15:00Z"}
    assert token == Token("issued", T0 + 900)  # the expiry asked for, as the response names none


@pytest.mark.parametrize(
    ("response", "value", "expires_at"),
    [
        (httpx.Response(200, json={"access_token": "a1", "expires_in": 600}), "a1", T0 + 600),
        (httpx.Response(200, json={"token": "a2", "expires_at": "2027-01-15T09:00:00Z"}), "a2", T0 + 3600),
        (httpx.Response(200, json={"token": "a3", "expires_at": T0 + 42}), "a3", T0 + 42),
        (httpx.Response(200, json={"token": make_jwt(T0 + 77)}), make_jwt(T0 + 77), T0 + 77),
        (httpx.Response(200, json=make_jwt(T0 + 88)), make_jwt(T0 + 88), T0 + 88),
        (httpx.Response(200, json="opaque-json-string"), "opaque-json-string", T0 + 3600),
        (httpx.Response(200, text=make_jwt(T0 + 99) + "\n"), make_jwt(T0 + 99), T0 + 99),
        (httpx.Response(200, text=make_jwt(None)), make_jwt(None), T0 + 3600),
    ],
)
async def test_issuer_token_accepts_each_response_shape(
    response: httpx.Response, value: str, expires_at: float
) -> None:
    router = respx.Router()
    router.post(ISSUER_URL).mock(return_value=response)
    token = await IssuerToken("key/1", ISSUER_SECRET, clock=FakeClock()).fetch(endpoint_context(router))
    assert token == Token(value, expires_at)


@pytest.mark.parametrize(
    ("response", "complaint"),
    [
        (httpx.Response(200, text="<html>welcome</html>"), "neither JSON nor a bare JWT"),
        (httpx.Response(200, text=""), "token response is empty"),
        (httpx.Response(200, json={"id": "x"}), "no 'access_token' or 'token' string"),
        (httpx.Response(200, json=[1]), "JSON list, not an object or string"),
        (httpx.Response(200, json=""), "empty JSON string"),
        (httpx.Response(200, json={"token": "t", "expires_at": "tomorrow"}), "'expires_at' is neither"),
    ],
)
async def test_issuer_token_malformed_responses(response: httpx.Response, complaint: str) -> None:
    router = respx.Router()
    router.post(ISSUER_URL).mock(return_value=response)
    with pytest.raises(TokenEndpointError, match=complaint):
        await IssuerToken("key/1", ISSUER_SECRET).fetch(endpoint_context(router))


async def test_issuer_token_rejected_issuer() -> None:
    router = respx.Router()
    route = router.post(ISSUER_URL).mock(
        return_value=httpx.Response(403, json={"status": 403, "message": "forbidden"})
    )
    refresher = TokenRefresher(IssuerToken("key/1", ISSUER_SECRET), context=endpoint_context(router))
    with pytest.raises(TokenEndpointError) as caught:
        await refresher.get()
    assert str(caught.value) == f"token endpoint {ISSUER_URL} answered 403: forbidden"
    assert route.call_count == 1


# --- TokenRefresher -----------------------------------------------------------------------------


async def test_100_tasks_across_an_expiry_make_one_token_request() -> None:
    clock = FakeClock()
    server = TokenServer(expires_in=3600)
    router = respx.Router()
    route = router.post(OAUTH_URL).mock(side_effect=server)
    refresher = TokenRefresher(
        ClientCredentials("c", CLIENT_SECRET, clock=clock), context=endpoint_context(router), clock=clock
    )
    first = await refresher.get()
    assert first.access_token.get_secret_value() == "tok-1"

    clock.set_time(T0 + 3600 + 1)  # past the expiry
    server.gate = anyio.Event()
    got: list[Token] = []

    async def worker() -> None:
        got.append(await refresher.get())

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(worker)
        await settle()
        assert server.received == 2  # the first token, and one renewal in flight for all 100 tasks
        server.gate.set()
    assert len(got) == 100
    assert {token.access_token.get_secret_value() for token in got} == {"tok-2"}
    assert route.call_count == 2
    assert refresher.fetch_count == 2


async def test_failed_fetch_wakes_every_waiter_with_the_error_and_the_next_get_retries() -> None:
    clock = FakeClock()
    source = ControlledSource(clock)
    source.gate = anyio.Event()
    source.fail_with = [TokenError("boom")]
    refresher = TokenRefresher(source, clock=clock)
    errors: list[BaseException] = []

    async def worker() -> None:
        try:
            await refresher.get()
        except TokenError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(worker)
        await settle()
        source.gate.set()
    assert len(errors) == 50
    assert all(str(error) == "boom" for error in errors)
    assert source.calls == 1
    token = await refresher.get()
    assert token.access_token.get_secret_value() == "custom-2"
    assert source.calls == 2


async def test_cancelled_fetch_hands_over_to_a_waiter() -> None:
    clock = FakeClock()
    source = ControlledSource(clock)
    source.gate = anyio.Event()
    refresher = TokenRefresher(source, clock=clock)
    got: list[Token] = []

    async def waiter() -> None:
        got.append(await refresher.get())

    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await refresher.get()

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await settle()
        tg.start_soon(waiter)
        await settle()
        assert source.calls == 1
        leader_scope.cancel()
        await settle()
        assert source.calls == 2  # the waiter took over
        source.gate.set()
    assert [token.access_token.get_secret_value() for token in got] == ["custom-2"]


async def test_proactive_refresh_at_the_leeway_boundary() -> None:
    clock = FakeClock()
    source = ControlledSource(clock, lifetime=3600)
    refresher = TokenRefresher(source, clock=clock, leeway=60)
    assert (await refresher.get()).access_token.get_secret_value() == "custom-1"
    clock.set_time(T0 + 3539.9)
    assert (await refresher.get()).access_token.get_secret_value() == "custom-1"
    clock.set_time(T0 + 3540)
    assert (await refresher.get()).access_token.get_secret_value() == "custom-2"
    assert source.calls == 2


async def test_short_lived_tokens_are_renewed_halfway_not_on_every_call() -> None:
    clock = FakeClock()
    source = ControlledSource(clock, lifetime=30)
    refresher = TokenRefresher(source, clock=clock, leeway=60)
    await refresher.get()
    clock.set_time(T0 + 14.9)
    await refresher.get()
    assert source.calls == 1
    clock.set_time(T0 + 15)
    await refresher.get()
    assert source.calls == 2


async def test_tokens_without_expiry_are_kept_until_a_refresh() -> None:
    clock = FakeClock()
    source = ControlledSource(clock, lifetime=None)
    refresher = TokenRefresher(source, clock=clock)
    first = await refresher.get()
    clock.set_time(clock.time() + 10**8)
    assert await refresher.get() is first
    assert source.calls == 1
    second = await refresher.refresh(first)
    assert second.access_token.get_secret_value() == "custom-2"
    assert await refresher.get() is second


async def test_refresh_skips_the_request_when_the_rejected_token_was_already_replaced() -> None:
    clock = FakeClock()
    source = ControlledSource(clock)
    refresher = TokenRefresher(source, clock=clock)
    old = await refresher.get()
    new = await refresher.refresh(old)
    assert source.calls == 2
    assert await refresher.refresh(old) is new
    assert source.calls == 2
    assert (await refresher.refresh()).access_token.get_secret_value() == "custom-3"
    assert source.calls == 3


async def test_custom_sources() -> None:
    clock = FakeClock()

    class Retryable:
        def __init__(self) -> None:
            self.calls = 0

        async def fetch(self) -> Token:
            self.calls += 1
            if self.calls == 1:
                raise TokenEndpointUnavailableError("https://vault.example.com", 503, "busy")
            return Token("from-vault", clock.time() + 60)

    refresher = TokenRefresher(Retryable(), clock=clock)
    assert (await refresher.get()).access_token.get_secret_value() == "from-vault"
    assert refresher.fetch_count == 2
    assert len(clock.delays) == 1

    class Broken:
        calls = 0

        async def fetch(self) -> Token:
            Broken.calls += 1
            raise ValueError("vault is sealed")

    with pytest.raises(ValueError, match="sealed"):
        await TokenRefresher(Broken(), clock=clock).get()
    assert Broken.calls == 1  # only failures marked retryable are retried

    class WrongType:
        async def fetch(self) -> str:
            return "bare string"

    with pytest.raises(TokenError, match=r"WrongType.fetch\(\) returned str, expected a Token"):
        await TokenRefresher(WrongType(), clock=clock).get()  # type: ignore[arg-type]

    class Stale:
        async def fetch(self) -> Token:
            return Token("stale", clock.time() - 5)

    with pytest.raises(TokenExpiredError, match=r"expired at 2027-01-15T07:59:55Z \(5 s ago\)"):
        await TokenRefresher(Stale(), clock=clock).get()

    with pytest.raises(ConfigurationError, match="not str"):
        TokenRefresher("a token")  # type: ignore[arg-type]


def test_refresher_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="leeway"):
        TokenRefresher(StaticToken("t"), leeway=-1)
    with pytest.raises(ConfigurationError, match="RetryPolicy"):
        TokenRefresher(StaticToken("t"), retry=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="backoff_base"):
        RetryPolicy(backoff_base=-0.1)
    with pytest.raises(ConfigurationError, match="unauthorized_refresh_interval"):
        TokenRefresher(StaticToken("t"), unauthorized_refresh_interval=-1)
    with pytest.raises(ConfigurationError, match="TokenRefresher"):
        AmperityAuth(StaticToken("t"))  # type: ignore[arg-type]


# --- AmperityAuth: header, 401 refresh and replay -----------------------------------------------


class ApiServer:
    """An API endpoint accepting only the tokens in ``valid``."""

    def __init__(self) -> None:
        self.valid: set[str] = set()
        self.seen: list[tuple[str, bytes]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.headers.get("authorization", ""), request.content))
        await anyio.lowlevel.checkpoint()
        if request.headers.get("authorization", "").removeprefix("Bearer ") in self.valid:
            return httpx.Response(200, json={"data": []})
        return httpx.Response(401, json={"status": 401, "message": "expired token"})


def client_with(router: respx.Router, refresher: TokenRefresher) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        auth=AmperityAuth(refresher), transport=httpx.MockTransport(router.async_handler)
    )


async def test_401_refreshes_once_and_replays_once() -> None:
    clock = FakeClock()
    server = TokenServer()
    api = ApiServer()
    router = respx.Router()
    token_route = router.post(OAUTH_URL).mock(side_effect=server)
    api_route = router.post(f"{BASE}/workflows/wf-1/run").mock(side_effect=api)
    refresher = TokenRefresher(
        ClientCredentials("c", CLIENT_SECRET, clock=clock), context=endpoint_context(router), clock=clock
    )
    api.valid = {"tok-2"}  # the server no longer accepts tok-1, though it has not expired
    async with client_with(router, refresher) as client:
        response = await client.post(f"{BASE}/workflows/wf-1/run", json={"config_id": "cg-1"})
    assert response.status_code == 200
    assert token_route.call_count == 2
    assert api_route.call_count == 2
    assert api.seen == [
        ("Bearer tok-1", b'{"config_id":"cg-1"}'),
        ("Bearer tok-2", b'{"config_id":"cg-1"}'),
    ]
    assert [r.status_code for r in response.history] == [401]


async def test_second_401_is_returned_as_is() -> None:
    clock = FakeClock()
    server = TokenServer()
    api = ApiServer()
    router = respx.Router()
    token_route = router.post(OAUTH_URL).mock(side_effect=server)
    api_route = router.get(API_URL).mock(side_effect=api)
    refresher = TokenRefresher(
        ClientCredentials("c", CLIENT_SECRET, clock=clock), context=endpoint_context(router), clock=clock
    )
    async with client_with(router, refresher) as client:
        response = await client.get(API_URL)
    assert response.status_code == 401
    assert response.json()["message"] == "expired token"
    assert token_route.call_count == 2
    assert api_route.call_count == 2


async def test_50_concurrent_401s_make_one_refresh() -> None:
    clock = FakeClock()
    server = TokenServer()
    api = ApiServer()
    router = respx.Router()
    token_route = router.post(OAUTH_URL).mock(side_effect=server)
    api_route = router.get(API_URL).mock(side_effect=api)
    refresher = TokenRefresher(
        ClientCredentials("c", CLIENT_SECRET, clock=clock), context=endpoint_context(router), clock=clock
    )
    await refresher.get()
    api.valid = {"tok-2"}
    statuses: list[int] = []
    async with client_with(router, refresher) as client:

        async def call() -> None:
            statuses.append((await client.get(API_URL)).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(call)
    assert statuses == [200] * 50
    assert token_route.call_count == 2
    assert api_route.call_count == 100
    assert sorted(header for header, _ in api.seen) == ["Bearer tok-1"] * 50 + ["Bearer tok-2"] * 50


async def test_failed_refresh_after_a_401_raises_the_token_error() -> None:
    clock = FakeClock()
    router = respx.Router()
    router.post(OAUTH_URL).mock(
        side_effect=[oauth_response("tok-1"), httpx.Response(400, json={"error": "invalid_grant"})]
    )
    api_route = router.get(API_URL).mock(return_value=httpx.Response(401))
    refresher = TokenRefresher(
        ClientCredentials("c", CLIENT_SECRET, clock=clock), context=endpoint_context(router), clock=clock
    )
    async with client_with(router, refresher) as client:
        with pytest.raises(TokenEndpointError, match="answered 400: invalid_grant"):
            await client.get(API_URL)
    assert api_route.call_count == 1


def test_sync_clients_are_refused() -> None:
    auth = AmperityAuth(TokenRefresher(StaticToken("t")))
    with (
        httpx.Client(auth=auth, transport=httpx.MockTransport(lambda request: httpx.Response(200))) as client,
        pytest.raises(ConfigurationError, match="only with httpx.AsyncClient"),
    ):
        client.get(API_URL)


# --- Secrets stay secret ------------------------------------------------------------------------


async def test_reprs_never_show_secrets() -> None:
    clock = FakeClock()
    jwt = make_jwt(T0 + 600)
    router = respx.Router()
    router.post(OAUTH_URL).mock(return_value=oauth_response("tok-secret-1"))
    credentials = ClientCredentials("my-client", CLIENT_SECRET, clock=clock)
    refresher = TokenRefresher(credentials, context=endpoint_context(router), clock=clock)
    token = await refresher.get()
    issuer = IssuerToken("key-1", ISSUER_SECRET)
    static = StaticToken(jwt, clock=clock)
    texts = {
        "secret": repr(Secret(CLIENT_SECRET)),
        "token": repr(token),
        "static": repr(static),
        "credentials": repr(credentials),
        "issuer": repr(issuer),
        "refresher": repr(refresher),
        "auth": repr(AmperityAuth(refresher)),
    }
    for text in texts.values():
        for secret in (CLIENT_SECRET, ISSUER_SECRET, jwt, "tok-secret-1"):
            assert secret not in text
    assert texts["credentials"] == (
        "ClientCredentials(client_id='my-client', client_secret=Secret('**********'), token_url=None)"
    )
    assert texts["static"] == "StaticToken(token=Secret('**********'), expires_at=2027-01-15T08:10:00Z)"
    assert (
        texts["issuer"]
        == "IssuerToken(api_key_id='key-1', issuer_token=Secret('**********'), lifetime=3600.0)"
    )
    assert texts["token"] == "Token(access_token=Secret('**********'), expires_at=1800003600.0)"
    assert texts["refresher"].endswith("leeway=60.0, token=expires at 2027-01-15T09:00:00Z)")


async def test_no_log_record_or_error_contains_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    first, second = make_jwt(T0 + 3600, sub="one"), make_jwt(T0 + 7200, sub="two")
    router = respx.Router()
    router.post(OAUTH_URL).mock(
        side_effect=[
            httpx.Response(503, text=f"echo {CLIENT_SECRET}"),
            oauth_response(first),
            httpx.Response(500, json={"message": f"echo {CLIENT_SECRET}"}),
            oauth_response(second),
            httpx.Response(401, json={"error": "invalid_client", "error_description": CLIENT_SECRET}),
        ]
    )
    issuer_route = router.post(f"{BASE}/v0/admin/api-keys/key-1/tokens")
    issuer_route.mock(return_value=httpx.Response(401, text=f"bad issuer {ISSUER_SECRET}"))
    api = ApiServer()
    api.valid = {second}
    router.get(API_URL).mock(side_effect=api)
    refresher = TokenRefresher(
        ClientCredentials("c", CLIENT_SECRET, clock=clock), context=endpoint_context(router), clock=clock
    )
    messages: list[str] = []
    async with client_with(router, refresher) as client:
        assert (await client.get(API_URL)).status_code == 200  # 503, token, 401, 500, token, replay
        clock.set_time(T0 + 7200)
        with pytest.raises(TokenEndpointError) as caught:
            await client.get(API_URL)
        messages += [str(caught.value), repr(caught.value)]
    issuer_refresher = TokenRefresher(
        IssuerToken("key-1", ISSUER_SECRET, clock=clock), context=endpoint_context(router), clock=clock
    )
    with pytest.raises(TokenEndpointError) as caught:
        await issuer_refresher.get()
    messages += [str(caught.value), repr(caught.value)]
    assert len(clock.delays) == 2
    records = [record.getMessage() for record in caplog.records]
    assert any("retrying in" in record for record in records)
    assert any("replaying it once" in record for record in records)
    for text in records + messages:
        for secret in (CLIENT_SECRET, ISSUER_SECRET, first, second):
            assert secret not in text


# --- One clock for the whole auth layer ---------------------------------------------------------


async def test_built_in_sources_read_the_refreshers_clock_unless_given_their_own() -> None:
    clock = FakeClock()
    router = respx.Router()
    router.post(OAUTH_URL).mock(return_value=oauth_response("tok-1", 600))
    refresher = TokenRefresher(
        ClientCredentials("c", CLIENT_SECRET), context=endpoint_context(router), clock=clock
    )
    assert (await refresher.get()).expires_at == T0 + 600

    static = TokenRefresher(StaticToken(make_jwt(T0 + 10)), clock=clock)
    assert (await static.get()).expires_at == T0 + 10
    clock.set_time(T0 + 10)
    with pytest.raises(TokenExpiredError):
        await static.get()

    own_clock = FakeClock(T0 + 5000)
    mixed = TokenRefresher(
        ClientCredentials("c", CLIENT_SECRET, clock=own_clock), context=endpoint_context(router), clock=clock
    )
    assert (await mixed.get()).expires_at == T0 + 5600


async def test_a_renewal_that_returns_the_same_access_token_is_not_replayed() -> None:
    clock = FakeClock()
    router = respx.Router()
    token_route = router.post(OAUTH_URL).mock(return_value=oauth_response("same-token", 3600))
    api_route = router.get(API_URL).mock(return_value=httpx.Response(401))
    refresher = TokenRefresher(
        ClientCredentials("c", CLIENT_SECRET), context=endpoint_context(router), clock=clock
    )
    async with client_with(router, refresher) as client:
        first = await client.get(API_URL)
        clock.set_time(T0 + 100)  # the endpoint hands out the same token with a later expiry
        second = await client.get(API_URL)
    assert first.status_code == second.status_code == 401
    assert api_route.call_count == 2  # one per call: no replay with the token just refused
    assert token_route.call_count == 3  # the first token, then one renewal per 401
