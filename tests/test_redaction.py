"""Secrets echoed back never leak (issue item 6).

Servers on 127.0.0.1 echo the Authorization header and the token request's form body back in
every encoding a server might use; no text that leaves the library (``str``/``repr`` of the error,
its traceback, its ``body``, log records, the CLI's output) may hold a token or secret in any form.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import sys
import traceback
import urllib.parse
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from client_support import client_for, error_from
from hostile_server import Request, hostile_server, response

from amperity_async import (
    AmperityClient,
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ClientCredentials,
    ConfigurationError,
    InternalServerError,
    IssuerToken,
    Redactor,
    Secret,
    StaticToken,
    TokenCredentialsRejectedError,
    TokenEndpointUnavailableError,
)
from amperity_async.api.segments import list_segment
from amperity_async.custom.secrets import REDACTED

pytestmark = pytest.mark.anyio

# Characters that every encoding treats differently: '+', '/', '=', '&', ' ', '%', '"', '\\'.
CLIENT_SECRET = 'cl1ent+s3cret/with=odd&chars 100% "quoted" \\ end'
ISSUER_SECRET = "issuer+T0ken/for=keys&more"
FIRST_TOKEN = "acc3ss+tok/en=one&first"
SECOND_TOKEN = "acc3ss+tok/en=two&second"


def encodings(value: str) -> dict[str, str]:
    """How a server may echo ``value``, computed independently of the library."""
    raw = value.encode()
    forms = {
        "raw": value,
        "quote": urllib.parse.quote(value, safe=""),
        "quote-path": urllib.parse.quote(value),
        "quote_plus": urllib.parse.quote_plus(value),
        "quote-lowercase-hex": re.sub(
            r"%[0-9A-F]{2}", lambda m: m.group().lower(), urllib.parse.quote(value, safe="")
        ),
        "base64": base64.b64encode(raw).decode(),
        "base64-urlsafe": base64.urlsafe_b64encode(raw).decode(),
        "json": json.dumps(value)[1:-1],
    }
    return forms


def echo(value: str) -> str:
    return " | ".join(f"{name}={form}" for name, form in encodings(value).items())


def assert_clean(texts: list[str], *secrets: str) -> None:
    joined = "\n".join(texts)
    for secret in secrets:
        for name, form in encodings(secret).items():
            assert form not in joined, f"the {name} form of a secret leaked"
        # Inside a longer base64 text the secret shows at any alignment.
        for prefix in (b"x", b"xy", b"xyz"):
            core = base64.b64encode(prefix + secret.encode()).decode()[4:-4]
            assert core not in joined, "a secret leaked inside a longer base64 text"


def texts_of(exc: BaseException, caplog: pytest.LogCaptureFixture) -> list[str]:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    texts += [str(value) for value in vars(exc).values() if isinstance(value, str)]
    texts += [record.getMessage() for record in caplog.records]
    texts += [logging.Formatter("%(message)s %(exc_text)s").format(record) for record in caplog.records]
    return texts


def token_answer(token: str) -> bytes:
    return response(
        body=json.dumps({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}).encode()
    )


def echo_answer(status: int, request: Request, what: str) -> bytes:
    header = request.headers.get("authorization", "")
    body = json.dumps({"message": f"{what}: {echo(header)} {echo(header.removeprefix('Bearer '))}"})
    return response(status, body.encode(), reason="Echo")


@pytest.mark.parametrize("status", [400, 500])
async def test_an_api_that_echoes_the_authorization_header(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def handler(request: Request, stream: anyio.abc.SocketStream) -> bool:
        if request.path.endswith("/oauth2/token"):
            await stream.send(token_answer(FIRST_TOKEN))
        else:
            await stream.send(echo_answer(status, request, "you sent"))
        return True

    async with hostile_server(handler) as server:
        auth = ClientCredentials("client-1", CLIENT_SECRET)
        async with client_for(server.base_url, auth=auth) as client:
            with pytest.raises(BadRequestError if status == 400 else InternalServerError) as caught:
                await client.call(list_segment)
            assert REDACTED in caught.value.message
    assert len(server.requests) == (2 if status == 400 else 4)  # the token, then 1 or 3 attempts
    assert_clean(texts_of(caught.value, caplog), FIRST_TOKEN, CLIENT_SECRET)


async def test_a_401_echo_hides_the_rejected_and_the_renewed_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    issued = iter([FIRST_TOKEN, SECOND_TOKEN])

    async def handler(request: Request, stream: anyio.abc.SocketStream) -> bool:
        if request.path.endswith("/oauth2/token"):
            await stream.send(token_answer(next(issued)))
        else:
            await stream.send(echo_answer(401, request, "rejected"))
        return True

    auth = ClientCredentials("client-1", CLIENT_SECRET)
    async with hostile_server(handler) as server, client_for(server.base_url, auth=auth) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.call(list_segment)
        text = repr(client) + repr(client.refresher)
    assert [r.path for r in server.requests].count("/api/segments") == 2, "one replay"
    assert_clean([*texts_of(caught.value, caplog), text], FIRST_TOKEN, SECOND_TOKEN, CLIENT_SECRET)


async def test_a_token_endpoint_that_echoes_its_form_body(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    statuses = iter([503, 503, 400])

    async def handler(request: Request, stream: anyio.abc.SocketStream) -> bool:
        form = request.body.decode()  # the client secret, quote_plus-encoded, as sent
        status = next(statuses)
        decoded = urllib.parse.unquote_plus(form)
        body = json.dumps({"error": "invalid_client", "error_description": f"got {form} = {echo(decoded)}"})
        await stream.send(response(status, body.encode(), {"Retry-After": "0"}, reason="Echo"))
        return True

    error, _ = await error_from(
        handler, AuthenticationError, auth=ClientCredentials("client-1", CLIENT_SECRET)
    )
    assert isinstance(error, TokenCredentialsRejectedError)
    assert error.status_code == 400
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("retrying" in r.getMessage() for r in warnings)
    assert all(REDACTED in r.getMessage() for r in warnings)
    assert_clean(texts_of(error, caplog), CLIENT_SECRET)


async def test_an_unavailable_token_endpoint_echo_is_scrubbed_after_its_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(request: Request, stream: anyio.abc.SocketStream) -> bool:
        body = json.dumps({"message": f"overloaded; {request.body.decode()}"})
        await stream.send(response(503, body.encode(), {"Retry-After": "0"}, reason="Busy"))
        return True

    error, server = await error_from(
        handler, TokenEndpointUnavailableError, auth=ClientCredentials("client-1", CLIENT_SECRET)
    )
    assert len(server.requests) == 4  # one request and three retries
    assert_clean(texts_of(error, caplog), CLIENT_SECRET)


async def test_an_issuer_endpoint_that_echoes_the_issuer_token(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: Request, stream: anyio.abc.SocketStream) -> bool:
        await stream.send(echo_answer(403, request, "this key may not mint tokens"))
        return True

    error, _ = await error_from(handler, AuthenticationError, auth=IssuerToken("key-1", ISSUER_SECRET))
    assert_clean(texts_of(error, caplog), ISSUER_SECRET)


async def test_protocol_garbage_carrying_the_token_does_not_leak_through_the_chained_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(request: Request, stream: anyio.abc.SocketStream) -> bool:
        header = request.headers.get("authorization", "")
        await stream.send(f"HTTP/1.1 200 OK\r\nBroken Header {header}\r\n\r\n".encode())
        return False

    error, _ = await error_from(handler, APIConnectionError, auth=StaticToken(FIRST_TOKEN), max_retries=0)
    assert error.kind == "protocol"
    assert_clean(texts_of(error, caplog), FIRST_TOKEN)


async def test_the_cli_prints_no_secret(tmp_path: Any) -> None:
    async def handler(request: Request, stream: anyio.abc.SocketStream) -> bool:
        if request.path.endswith("/oauth2/token"):
            await stream.send(token_answer(FIRST_TOKEN))
        else:
            await stream.send(echo_answer(400, request, "you sent"))
        return True

    async with hostile_server(handler) as server:
        env = {
            **os.environ,
            "AMPERITY_TENANT": "acme",
            "AMPERITY_BASE_URL": server.base_url,
            "AMPERITY_CLIENT_ID": "client-1",
            "AMPERITY_CLIENT_SECRET": CLIENT_SECRET,
        }
        result = await anyio.run_process(
            [
                sys.executable,
                "-m",
                "amperity_async",
                "extract",
                "list_segment",
                "--out",
                str(tmp_path / "o.jsonl"),
            ],
            env=env,
            check=False,
        )
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "400 from GET" in stderr and REDACTED in stderr
    assert_clean([stderr, result.stdout.decode()], FIRST_TOKEN, CLIENT_SECRET)


def test_a_base_url_with_user_info_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        AmperityClient(
            tenant="acme", auth=StaticToken("t" * 20), base_url="https://admin:hunter2pw@example.com/api"
        )
    assert "user info" in str(caught.value)
    assert "hunter2pw" not in str(caught.value) and "admin" not in str(caught.value)


async def test_long_error_bodies_are_truncated() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text="x" * 20_000)

    async with client_for(
        "https://app.amperity.com/api", auth=StaticToken("t" * 20), transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(BadRequestError) as caught:
            await client.call(list_segment)
    assert len(str(caught.value)) < 700 and "more characters" in str(caught.value)
    assert len(caught.value.body) < 600


async def test_a_secret_across_the_truncation_point_leaves_no_part_behind() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text="x" * 490 + FIRST_TOKEN + "y" * 1000)

    async with client_for(
        "https://app.amperity.com/api", auth=StaticToken(FIRST_TOKEN), transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(BadRequestError) as caught:
            await client.call(list_segment)
    for text in (str(caught.value), caught.value.body):
        assert FIRST_TOKEN[:6] not in text and REDACTED in text


# --- the Redactor itself ---------------------------------------------------------------------------


def test_every_form_is_scrubbed_including_lowercase_escapes_and_base64_at_any_alignment() -> None:
    redactor = Redactor(CLIENT_SECRET)
    for name, form in encodings(CLIENT_SECRET).items():
        assert redactor.scrub(f"before {form} after") == f"before {REDACTED} after", name
    for prefix in (b"", b"a", b"ab", b"abc", b"user:"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            blob = encode(prefix + CLIENT_SECRET.encode() + b":suffix").decode()
            scrubbed = redactor.scrub(f"Basic {blob}")
            assert REDACTED in scrubbed
            assert CLIENT_SECRET not in _decodings(scrubbed.removeprefix("Basic "))


def _decodings(text: str) -> str:
    """Every base64 reading of the parts of ``text`` around the redaction marks."""
    out = []
    for part in text.split(REDACTED):
        for start in range(4):
            chunk = part[start:]
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            try:
                out.append(base64.b64decode(chunk.replace("-", "+").replace("_", "/")).decode("latin-1"))
            except ValueError:
                pass
    return "\n".join(out)


def test_tokens_rotate_and_short_values_are_left_alone() -> None:
    redactor = Redactor(keep_tokens=2)
    for n in range(3):
        redactor.add_token(f"token-number-{n}")
    assert redactor.scrub("token-number-0") == "token-number-0", "only the most recent tokens are kept"
    assert redactor.scrub("token-number-1 token-number-2") == f"{REDACTED} {REDACTED}"
    redactor.add("abc")
    assert redactor.scrub("abcabc") == "abcabc", "values too short to be secrets would wreck the text"
    assert redactor.scrub("") == "" and Redactor().scrub("anything") == "anything"


def test_included_redactors_count_and_there_is_no_shared_state() -> None:
    source, client, other = Redactor("source-secret-1"), Redactor(), Redactor()
    client.include(source)
    client.include(client)  # harmless
    source.add(Secret("added-later-2"))
    assert client.scrub("source-secret-1 added-later-2") == f"{REDACTED} {REDACTED}"
    assert other.scrub("source-secret-1") == "source-secret-1"
    assert "source-secret" not in repr(client) and "2 secret values" in repr(client)


def test_scrub_error_rewrites_message_and_attributes() -> None:
    redactor = Redactor("leaky-secret-value")
    error = BadRequestError(
        "echo leaky-secret-value",
        status_code=400,
        method="GET",
        url="https://x/api",
        body="leaky-secret-value",
    )
    redactor.scrub_error(error)
    assert "leaky" not in str(error) and error.body == REDACTED and error.message == f"echo {REDACTED}"
    assert redactor.safe_cause(ValueError("leaky-secret-value")) is None
    harmless = ValueError("nothing to hide")
    assert redactor.safe_cause(harmless) is harmless
