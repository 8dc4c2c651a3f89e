"""openapi/realtime.json, our description of Amperity's Real-time API, says what its documentation
pages say: the operations, markers and statuses, and every example request and response the pages
show fits the document. A client generated from it sends those requests and reads those answers."""

from __future__ import annotations

import datetime
import importlib
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import httpx
import pytest
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import validate as validate_spec
from openapi_spec_validator.validation import OpenAPIV30SpecValidator

PROJECT = Path(__file__).resolve().parents[1]
DOCUMENT_FILE = PROJECT / "openapi" / "realtime.json"
DOCUMENT: dict[str, Any] = json.loads(DOCUMENT_FILE.read_text(encoding="utf-8"))
HTTP_METHODS = ("get", "put", "post", "delete", "patch")

# operationId -> (method, path), from the page of each endpoint.
EXPECTED_OPERATIONS = {
    "send-event": ("post", "/events/{stream-id}"),
    "lookup-profile": ("get", "/lookup/{collection-id}/keychain"),
    "lookup-profile-by-keys": ("post", "/lookup/{collection-id}/keychain"),
    "get-collection-profile": ("get", "/profiles/{collection-id}/{profile-id}"),
    "list-segment-members": ("get", "/segments/{segment-id}/profiles"),
    "list-profile-segments": ("get", "/profiles/{collection-id}/{profile-id}/segments"),
    "get-collection-stats": ("get", "/collections/{collection-id}/stats"),
    "get-collection-history": ("get", "/collections/{collection-id}/history"),
}

# Statuses each endpoint's page names, and those responses.rst names for every endpoint (every
# request is authenticated and permission-checked, may hit a rate limit or a server failure).
PAGE_STATUSES = {
    "send-event": {"202", "204", "400", "404", "409", "411", "413", "415", "503"},
    "lookup-profile": {"200", "400", "404"},
    "lookup-profile-by-keys": {"200", "400", "404"},
    "get-collection-profile": {"200", "404"},
    "list-segment-members": {"200"},
    "list-profile-segments": {"200"},
    "get-collection-stats": {"200"},
    "get-collection-history": {"200", "400"},
}
EVERY_OPERATION_STATUSES = {"400", "401", "403", "404", "429", "500", "503"}

# The pages' placeholders, replaced by values of the right kind.
PLACEHOLDERS = {
    "{tenant-id}": "socktown",
    "{token}": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJrZXkifQ.c2lnbmF0dXJl",
    "{stream-id}": "es-web-events",
    "{collection-id}": "pc-customers",
    "{profile-id}": "p-6b1f0c2e",
    "{segment-id}": "rts-high-value",
    "{segment-name}": "High value",
    "{next-token}": "ABCd1fghIJk2l3M",
    "{timestamp}": "2026-08-19T09:12:45Z",
}

# The "Request URL" blocks of each page (AWS, then Azure), verbatim.
PAGE_REQUEST_URLS = [
    (
        "endpoint_post_profile_store_events.rst",
        "send-event",
        "https://app.amperity.com/prof/events/{stream-id}",
    ),
    (
        "endpoint_post_profile_store_events.rst",
        "send-event",
        "https://{tenant-id}.amperity.com/prof/events/{stream-id}",
    ),
    (
        "endpoint_get_profile_store_lookup.rst",
        "lookup-profile",
        "https://app.amperity.com/prof/lookup/{collection-id}/keychain",
    ),
    (
        "endpoint_get_profile_store_lookup.rst",
        "lookup-profile",
        "https://{tenant-id}.amperity.com/prof/lookup/{collection-id}/keychain",
    ),
    (
        "endpoint_post_profile_store_lookup.rst",
        "lookup-profile-by-keys",
        "https://app.amperity.com/prof/lookup/{collection-id}/keychain",
    ),
    (
        "endpoint_post_profile_store_lookup.rst",
        "lookup-profile-by-keys",
        "https://{tenant-id}.amperity.com/prof/lookup/{collection-id}/keychain",
    ),
    (
        "endpoint_get_profile_store_profile.rst",
        "get-collection-profile",
        "https://app.amperity.com/prof/profiles/{collection-id}/{profile-id}",
    ),
    (
        "endpoint_get_profile_store_profile.rst",
        "get-collection-profile",
        "https://{tenant-id}.amperity.com/prof/profiles/{collection-id}/{profile-id}",
    ),
    (
        "endpoint_get_profile_store_segment_profiles.rst",
        "list-segment-members",
        "https://app.amperity.com/prof/segments/{segment-id}/profiles",
    ),
    (
        "endpoint_get_profile_store_segment_profiles.rst",
        "list-segment-members",
        "https://{tenant-id}.amperity.com/prof/segments/{segment-id}/profiles",
    ),
    (
        "endpoint_get_profile_segments.rst",
        "list-profile-segments",
        "https://app.amperity.com/prof/profiles/{collection-id}/{profile-id}/segments",
    ),
    (
        "endpoint_get_profile_segments.rst",
        "list-profile-segments",
        "https://{tenant-id}.amperity.com/prof/profiles/{collection-id}/{profile-id}/segments",
    ),
    (
        "endpoint_get_profile_store_stats.rst",
        "get-collection-stats",
        "https://app.amperity.com/prof/collections/{collection-id}/stats",
    ),
    (
        "endpoint_get_profile_store_stats.rst",
        "get-collection-stats",
        "https://{tenant-id}.amperity.com/prof/collections/{collection-id}/stats",
    ),
    (
        "endpoint_get_profile_store_history.rst",
        "get-collection-history",
        "https://app.amperity.com/prof/collections/{collection-id}/history",
    ),
    (
        "endpoint_get_profile_store_history.rst",
        "get-collection-history",
        "https://{tenant-id}.amperity.com/prof/collections/{collection-id}/history",
    ),
]

# The "Requests" example of each page, verbatim.
PAGE_REQUESTS = {
    "endpoint_post_profile_store_events.rst": (
        "send-event",
        """curl --request POST \\
       'https://app.amperity.com/prof/events/{stream-id}' \\
     --header 'amperity-tenant: {tenant-id}' \\
     --header 'Authorization: Bearer {token}' \\
     --header 'Content-Type: application/json' \\
     --data '{ "email": "customer@example.com", "event_type": "purchase", "order_total": 42.00 }'""",
    ),
    "endpoint_get_profile_store_lookup.rst": (
        "lookup-profile",
        """curl --request GET \\
       'https://app.amperity.com/prof/lookup/{collection-id}/keychain?email=customer@example.com' \\
     --header 'amperity-tenant: {tenant-id}' \\
     --header 'Authorization: Bearer {token}'""",
    ),
    "endpoint_post_profile_store_lookup.rst": (
        "lookup-profile-by-keys",
        """curl --request POST \\
       'https://app.amperity.com/prof/lookup/{collection-id}/keychain' \\
     --header 'amperity-tenant: {tenant-id}' \\
     --header 'Authorization: Bearer {token}' \\
     --header 'Content-Type: application/json' \\
     --data '{ "keys": { "email": "customer@example.com" }, "enrich": false }'""",
    ),
    "endpoint_get_profile_store_profile.rst": (
        "get-collection-profile",
        """curl --request GET \\
       'https://app.amperity.com/prof/profiles/{collection-id}/{profile-id}' \\
     --header 'amperity-tenant: {tenant-id}' \\
     --header 'Authorization: Bearer {token}'""",
    ),
    "endpoint_get_profile_store_segment_profiles.rst": (
        "list-segment-members",
        """curl --request GET \\
       'https://app.amperity.com/prof/segments/{segment-id}/profiles' \\
     --header 'amperity-tenant: {tenant-id}' \\
     --header 'Authorization: Bearer {token}'""",
    ),
    "endpoint_get_profile_segments.rst": (
        "list-profile-segments",
        """curl --request GET \\
       'https://app.amperity.com/prof/profiles/{collection-id}/{profile-id}/segments?limit=100' \\
     --header 'amperity-tenant: {tenant-id}' \\
     --header 'Authorization: Bearer {token}'""",
    ),
    "endpoint_get_profile_store_stats.rst": (
        "get-collection-stats",
        """curl --request GET \\
       'https://app.amperity.com/prof/collections/{collection-id}/stats' \\
     --header 'amperity-tenant: {tenant-id}' \\
     --header 'Authorization: Bearer {token}'""",
    ),
    "endpoint_get_profile_store_history.rst": (
        "get-collection-history",
        """curl --request GET \\
       'https://app.amperity.com/prof/collections/{collection-id}/history?scale=day' \\
     --header 'amperity-tenant: {tenant-id}' \\
     --header 'Authorization: Bearer {token}'""",
    ),
}

_PROFILE_EXAMPLE = """{
  "collection_id": "{collection-id}",
  "profile_id": "{profile-id}",
  "attributes": {
    "email": "customer@example.com"
  },
  "created_at": "{timestamp}",
  "updated_at": "{timestamp}",
  "ticked_at": "{timestamp}",
  "links": {
    "email": ["customer@example.com"],
    "phone": ["+15555550100"]
  }
}"""

# The "200 OK" example of each page, verbatim (the three profile pages show the same one), and the
# bodiless answers the events page lists.
PAGE_RESPONSES = {
    "endpoint_post_profile_store_events.rst 202": ("send-event", 202, None),
    "endpoint_post_profile_store_events.rst 204": ("send-event", 204, None),
    "endpoint_get_profile_store_lookup.rst": ("lookup-profile", 200, _PROFILE_EXAMPLE),
    "endpoint_post_profile_store_lookup.rst": ("lookup-profile-by-keys", 200, _PROFILE_EXAMPLE),
    "endpoint_get_profile_store_profile.rst": ("get-collection-profile", 200, _PROFILE_EXAMPLE),
    "endpoint_get_profile_store_segment_profiles.rst": (
        "list-segment-members",
        200,
        """{
  "data": [
    {
      "profile_id": "{profile-id}"
    }
  ],
  "next_token": "{next-token}",
  "total": 0
}""",
    ),
    "endpoint_get_profile_segments.rst": (
        "list-profile-segments",
        200,
        """{
  "data": [
    {
      "segment_id": "{segment-id}",
      "segment_name": "{segment-name}"
    }
  ],
  "next_token": "{next-token}",
  "total": 0
}""",
    ),
    "endpoint_get_profile_store_stats.rst": (
        "get-collection-stats",
        200,
        """{
  "total_profiles": 0,
  "link_cardinality": {
    "email": 0,
    "phone": 0
  }
}""",
    ),
    "endpoint_get_profile_store_history.rst": (
        "get-collection-history",
        200,
        """{
  "scale": "day",
  "data": [
    {
      "bucket": "{timestamp}",
      "count": 0
    }
  ]
}""",
    ),
}

# responses.rst's error example, verbatim: the page breaks the message with a backslash for its
# narrow layout, which is not JSON; `_page_json` joins it.
PAGE_ERROR_EXAMPLE = """{
  "status": 400,
  "message": "Error updating database: Cannot find campaign named \\
              'CampaignName'",
  "request_id":"1ab23456-c78d-9012-3456-78efg9hi01j2",
  "trace_id":"1a2b3456789cd0ef1g234hijklm5nopq"
}"""


# --- reading the document ------------------------------------------------------------------------


def operations() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (method, path, operation)."""
    return {
        op["operationId"]: (method, path, op)
        for path, item in DOCUMENT["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    }


def resolved(node: Any) -> Any:
    """``node`` with every ``$ref`` replaced by what it names (the document has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = DOCUMENT
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            return resolved(target)
        return {key: resolved(value) for key, value in node.items()}
    if isinstance(node, list):
        return [resolved(value) for value in node]
    return node


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    validator = OAS30Validator(resolved(schema), format_checker=oas30_format_checker)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


def parameters(op: dict[str, Any]) -> list[dict[str, Any]]:
    return [resolved(p) for p in op.get("parameters", [])]


def json_schema_of(node: dict[str, Any]) -> dict[str, Any]:
    content = resolved(node).get("content", {})
    assert set(content) == {"application/json"}, f"expected JSON content only, got {sorted(content)}"
    return dict(content["application/json"]["schema"])


def walk(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    yield where, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{where}/{index}")


# --- reading the pages' examples -------------------------------------------------------------------


def _fill(text: str) -> str:
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    left = re.findall(r"\{[a-z-]+\}", text)
    assert not left, f"placeholders without a value in PLACEHOLDERS: {left}"
    return text


def _page_json(text: str) -> Any:
    return json.loads(re.sub(r"\\\n\s*", "", _fill(text)))


@attrs.frozen
class PageRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


def parse_curl(command: str) -> PageRequest:
    """The request a page's curl example sends (only the options the pages use)."""
    words = shlex.split(_fill(command).replace("\\\n", " "))
    assert words[0] == "curl", words
    method, url, headers, body = "GET", None, {}, None
    options = iter(words[1:])
    for word in options:
        if word == "--request":
            method = next(options)
        elif word == "--header":
            name, _, value = next(options).partition(":")
            headers[name.strip().lower()] = value.strip()
        elif word == "--data":
            body = next(options).encode()
        elif word.startswith("-"):
            raise AssertionError(f"curl option {word} is not understood by this test")
        else:
            assert url is None, f"two URLs in {command!r}"
            url = word
    assert url is not None, command
    return PageRequest(method.upper(), url, headers, body)


# --- matching a request against the document -------------------------------------------------------


def _server_patterns() -> list[re.Pattern[str]]:
    patterns = []
    for server in DOCUMENT["servers"]:
        pattern = re.escape(server["url"])
        for name in server.get("variables", {}):
            pattern = pattern.replace(re.escape("{" + name + "}"), "[a-z0-9-]+")
        patterns.append(re.compile(f"^{pattern}(/.*)$"))
    return patterns


def route(method: str, url: str) -> tuple[str, dict[str, str]]:
    """The operationId and path parameters of a request, or AssertionError naming what did not fit."""
    address = url.split("?", 1)[0]
    paths = [m.group(1) for p in _server_patterns() if (m := p.match(address))]
    assert paths, f"{address} is under none of the servers {[s['url'] for s in DOCUMENT['servers']]}"
    found = []
    for template, item in DOCUMENT["paths"].items():
        names = re.findall(r"\{([^}]+)\}", template)
        pattern = re.escape(template)
        for name in names:
            pattern = pattern.replace(re.escape("{" + name + "}"), "([^/]+)")
        match = re.fullmatch(pattern, paths[0])
        if match and method.lower() in item:
            values = [urllib.parse.unquote(v) for v in match.groups()]
            found.append((item[method.lower()]["operationId"], dict(zip(names, values, strict=True))))
    assert len(found) == 1, f"{method} {url} matches {len(found)} operations"
    return found[0]


def _typed(value: str, schema: dict[str, Any]) -> Any:
    """A query or path value as the JSON value its schema describes (left as text when it is not)."""
    kind = resolved(schema).get("type")
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    if kind == "integer" and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    return value


def request_problems(request: PageRequest) -> list[str]:
    """What in ``request`` the document does not allow; empty when the document accepts it."""
    op_id, path_values = route(request.method, request.url)
    _, _, op = operations()[op_id]
    params = parameters(op)
    problems: list[str] = []
    for param in params:
        if param["in"] == "path":
            problems += [
                f"path {param['name']}: {e}"
                for e in schema_errors(param["schema"], path_values[param["name"]])
            ]

    query = urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query, keep_blank_values=True)
    named = {p["name"]: p for p in params if p["in"] == "query"}
    # An object parameter of style form, exploded, gathers every query parameter not declared by name.
    spread = [
        p
        for p in named.values()
        if p.get("style", "form") == "form"
        and p.get("explode", True)
        and resolved(p["schema"]).get("type") == "object"
    ]
    gathered: dict[str, Any] = {}
    given: set[str] = set()
    for name, value in query:
        if name in named and named[name] not in spread:
            given.add(name)
            problems += [
                f"query {name}: {e}"
                for e in schema_errors(named[name]["schema"], _typed(value, named[name]["schema"]))
            ]
        elif spread:
            gathered[name] = value
        else:
            problems.append(f"query parameter {name!r} is not declared")
    for param in spread:
        if gathered or param.get("required"):
            given.add(param["name"])
            problems += [f"query {param['name']}: {e}" for e in schema_errors(param["schema"], gathered)]
    problems += [
        f"required query parameter {n!r} missing"
        for n, p in named.items()
        if p.get("required") and n not in given
    ]

    for param in params:
        if param["in"] == "header" and param.get("required") and param["name"].lower() not in request.headers:
            problems.append(f"required header {param['name']!r} missing")
    schemes = DOCUMENT["components"]["securitySchemes"]
    bearer = any(
        schemes[name]["scheme"] == "bearer" for requirement in DOCUMENT["security"] for name in requirement
    )
    if bearer and not request.headers.get("authorization", "").startswith("Bearer "):
        problems.append("no Authorization: Bearer header")

    body_spec = resolved(op.get("requestBody"))
    if request.body is None:
        if body_spec and body_spec.get("required"):
            problems.append("the request body is required")
    elif not body_spec:
        problems.append("the operation takes no body")
    else:
        media = request.headers.get("content-type", "")
        if media not in body_spec["content"]:
            problems.append(f"body of type {media!r} is not declared")
        else:
            try:
                body = json.loads(request.body)
            except ValueError as exc:
                return [*problems, f"body is not JSON: {exc}"]
            problems += [f"body: {e}" for e in schema_errors(body_spec["content"][media]["schema"], body)]
    return problems


def response_problems(op_id: str, status: int, body: Any | None) -> list[str]:
    _, _, op = operations()[op_id]
    declared = op["responses"].get(str(status))
    if declared is None:
        return [f"{op_id} does not declare {status}"]
    content = resolved(declared).get("content")
    if body is None:
        return [f"{op_id} {status} declares a body the page does not show"] if content else []
    if not content:
        return [f"{op_id} {status} declares no body"]
    return [f"{status}: {e}" for e in schema_errors(json_schema_of(declared), body)]


# --- the document --------------------------------------------------------------------------------


def test_document_is_valid_openapi_3_0() -> None:
    assert DOCUMENT["openapi"].startswith("3.0.")
    validate_spec(DOCUMENT, cls=OpenAPIV30SpecValidator)


def test_document_is_formatted_like_the_upstream_documents() -> None:
    text = DOCUMENT_FILE.read_text(encoding="utf-8")
    assert text == json.dumps(DOCUMENT, indent=2, ensure_ascii=False) + "\n"


def test_the_eight_operations_with_their_methods_paths_and_one_tag() -> None:
    assert {op_id: (method, path) for op_id, (method, path, _) in operations().items()} == EXPECTED_OPERATIONS
    assert [tag["name"] for tag in DOCUMENT["tags"]] == ["realtime"]
    assert all(op["tags"] == ["realtime"] for _, _, op in operations().values())


def test_every_operation_is_marked_realtime_and_unstable() -> None:
    for op_id, (_, _, op) in operations().items():
        assert op["x-amperity-api"] == "realtime", op_id
        assert op["x-amperity-stability"] == "unstable", op_id
    assert DOCUMENT["info"]["version"] == "unstable"


def test_servers_are_the_amperity_hosts_under_prof() -> None:
    urls = [server["url"] for server in DOCUMENT["servers"]]
    assert urls == ["https://app.amperity.com/prof", "https://{tenant-id}.amperity.com/prof"]
    assert DOCUMENT["servers"][1]["variables"]["tenant-id"]["default"]


def test_no_api_version_anywhere_and_the_tenant_header_and_bearer_token_on_every_operation() -> None:
    declared = [
        node for _, node in walk(DOCUMENT) if isinstance(node, dict) and "in" in node and "name" in node
    ]
    assert declared, "no parameter found: the walk is broken"
    assert not [p for p in declared if p["name"].lower() == "api-version"]
    for op_id, (_, _, op) in operations().items():
        headers = [p for p in parameters(op) if p["in"] == "header"]
        assert [(h["name"], h["required"]) for h in headers] == [("amperity-tenant", True)], op_id
        assert "security" not in op, f"{op_id} overrides the document's bearer security"
    assert DOCUMENT["security"] == [{"BearerAuth": []}]
    assert DOCUMENT["components"]["securitySchemes"]["BearerAuth"] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "description": "",
    }


def test_parameters_name_no_default_the_server_applies_its_own() -> None:
    # A default in the document becomes a value every generated call sends.
    defaults = [
        where
        for where, node in walk(DOCUMENT)
        if isinstance(node, dict) and "default" in node and not where.endswith("/variables/tenant-id")
    ]
    assert defaults == []


def test_send_event_statuses_body_and_size_limit() -> None:
    _, _, op = operations()["send-event"]
    # Exactly the page's statuses and those of responses.rst for every request.
    assert set(op["responses"]) == PAGE_STATUSES["send-event"] | EVERY_OPERATION_STATUSES
    assert "content" not in op["responses"]["202"] and "content" not in op["responses"]["204"]
    assert op["x-amperity-max-body-bytes"] == 65536
    assert op["x-amperity-retryable-statuses"] == [503]
    assert op["requestBody"]["required"] is True
    assert resolved(json_schema_of(op["requestBody"])) | {"description": "", "example": {}} == {
        "type": "object",
        "additionalProperties": True,
        "description": "",
        "example": {},
    }


@pytest.mark.parametrize("op_id", sorted(EXPECTED_OPERATIONS))
def test_statuses_of_the_pages_are_declared_with_error_bodies(op_id: str) -> None:
    _, _, op = operations()[op_id]
    assert PAGE_STATUSES[op_id] | EVERY_OPERATION_STATUSES <= set(op["responses"])
    error_schema = DOCUMENT["components"]["schemas"]["ErrorResponse"]
    for status, response in op["responses"].items():
        if int(status) >= 400:
            assert json_schema_of(response) == error_schema, (op_id, status)
    assert error_schema["required"] == ["status", "message"]
    assert {"status", "message", "request_id", "trace_id"} == set(error_schema["properties"])
    assert response_problems(op_id, 400, _page_json(PAGE_ERROR_EXAMPLE)) == []


def test_list_segment_members_returns_a_cursor_it_does_not_accept() -> None:
    _, _, op = operations()["list-segment-members"]
    assert op["x-amperity-pagination"] == "none"
    assert [p["in"] for p in parameters(op)] == ["header", "path"]
    page = resolved(json_schema_of(op["responses"]["200"]))
    assert {"data", "next_token", "total"} <= set(page["properties"])
    assert page["required"] == ["data"]


def test_list_profile_segments_is_a_cursor_list() -> None:
    _, _, op = operations()["list-profile-segments"]
    assert "x-amperity-pagination" not in op
    query = {p["name"]: p["schema"]["type"] for p in parameters(op) if p["in"] == "query"}
    assert query == {"limit": "integer", "next_token": "string"}
    page = resolved(json_schema_of(op["responses"]["200"]))
    assert page["required"] == ["data"]
    assert page["properties"]["data"]["type"] == "array"
    assert page["properties"]["next_token"]["type"] == "string"
    assert page["properties"]["data"]["items"]["required"] == ["segment_id"]


def test_only_lookup_by_keys_is_a_post_that_may_be_repeated() -> None:
    marked = {op_id for op_id, (_, _, op) in operations().items() if op.get("x-amperity-idempotent")}
    assert marked == {"lookup-profile-by-keys"}


def test_free_form_maps_are_objects_with_additional_properties() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    maps = {
        "event body": schemas["StreamEvent"],
        "lookup keys": schemas["KeychainKeys"],
        "profile attributes": schemas["CollectionProfile"]["properties"]["attributes"],
        "profile links": schemas["CollectionProfile"]["properties"]["links"],
        "link cardinality": schemas["CollectionStats"]["properties"]["link_cardinality"],
    }
    for what, schema in maps.items():
        assert schema["type"] == "object" and "properties" not in schema, what
        assert schema["additionalProperties"] not in (None, False), what
    assert maps["profile links"]["additionalProperties"] == {"type": "array", "items": {"type": "string"}}
    assert maps["link cardinality"]["additionalProperties"] == {"type": "integer"}


def test_the_lookup_keys_travel_as_plain_query_parameters() -> None:
    _, _, op = operations()["lookup-profile"]
    (keys,) = [p for p in op["parameters"] if p.get("name") == "keys"]
    assert (keys["in"], keys["style"], keys["explode"], keys["required"]) == ("query", "form", True, True)
    # The generator hides a parameter's style from the templates; its schema carries it for them.
    assert resolved(keys["schema"])["x-amperity-query-style"] == keys["style"]
    assert {p["name"] for p in parameters(op) if p["in"] == "query"} == {"keys", "_enrich"}


def test_examples_in_the_document_fit_their_schemas() -> None:
    checked = 0
    for where, node in walk(DOCUMENT):
        if (
            isinstance(node, dict)
            and "example" in node
            and ("type" in node or "$ref" in node or "schema" in node)
        ):
            schema = node.get("schema", node)
            assert schema_errors(schema, node["example"]) == [], where
            checked += 1
    assert checked > 20


# --- the pages' examples -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "op_id", "url"), PAGE_REQUEST_URLS, ids=[f"{p}:{u[:22]}" for p, _, u in PAGE_REQUEST_URLS]
)
def test_request_urls_of_the_pages_lead_to_their_operation(page: str, op_id: str, url: str) -> None:
    found, values = route(EXPECTED_OPERATIONS[op_id][0], _fill(url))
    assert found == op_id, page
    assert all(values.values()), page
    # The AWS form is the document's first server, the Azure form (tenant in the host) its second.
    aws, azure = (server["url"] for server in DOCUMENT["servers"])
    server = _fill(azure) if "{tenant-id}" in url else aws
    assert _fill(url).startswith(server + "/"), (page, server)


@pytest.mark.parametrize("page", sorted(PAGE_REQUESTS))
def test_request_example_of_the_page_fits_the_document(page: str) -> None:
    op_id, command = PAGE_REQUESTS[page]
    request = parse_curl(command)
    assert route(request.method, request.url)[0] == op_id
    assert "api-version" not in request.headers
    assert request_problems(request) == []


@pytest.mark.parametrize("page", sorted(PAGE_RESPONSES))
def test_response_example_of_the_page_fits_the_document(page: str) -> None:
    op_id, status, text = PAGE_RESPONSES[page]
    assert response_problems(op_id, status, None if text is None else _page_json(text)) == []


def _with(request: PageRequest, **changes: Any) -> PageRequest:
    return attrs.evolve(request, **changes)


def _page_request(page: str) -> PageRequest:
    return parse_curl(PAGE_REQUESTS[page][1])


_BASE = "https://app.amperity.com/prof"
# Requests the pages rule out, each with a word of what must be named as wrong.
FORBIDDEN_REQUESTS: dict[str, tuple[Callable[[], PageRequest], str]] = {
    "lookup without a key": (
        lambda: _with(
            _page_request("endpoint_get_profile_store_lookup.rst"), url=f"{_BASE}/lookup/pc/keychain"
        ),
        "keys",
    ),
    "lookup with only _enrich": (
        lambda: _with(
            _page_request("endpoint_get_profile_store_lookup.rst"),
            url=f"{_BASE}/lookup/pc/keychain?_enrich=true",
        ),
        "keys",
    ),
    "lookup with _enrich not a boolean": (
        lambda: _with(
            _page_request("endpoint_get_profile_store_lookup.rst"),
            url=f"{_BASE}/lookup/pc/keychain?email=a@example.com&_enrich=yes",
        ),
        "_enrich",
    ),
    "lookup by keys with an empty map": (
        lambda: _with(_page_request("endpoint_post_profile_store_lookup.rst"), body=b'{"keys": {}}'),
        "body",
    ),
    "lookup by keys without keys": (
        lambda: _with(_page_request("endpoint_post_profile_store_lookup.rst"), body=b'{"enrich": true}'),
        "keys",
    ),
    "lookup by keys with a number as value": (
        lambda: _with(
            _page_request("endpoint_post_profile_store_lookup.rst"), body=b'{"keys": {"loyalty_id": 42}}'
        ),
        "loyalty_id",
    ),
    "event that is an array": (
        lambda: _with(_page_request("endpoint_post_profile_store_events.rst"), body=b"[{}]"),
        "body",
    ),
    "event that is not JSON": (
        lambda: _with(_page_request("endpoint_post_profile_store_events.rst"), body=b"email=a@example.com"),
        "body",
    ),
    "event without a body": (
        lambda: _with(_page_request("endpoint_post_profile_store_events.rst"), body=None),
        "body",
    ),
    "event as text": (
        lambda: _with(
            _page_request("endpoint_post_profile_store_events.rst"),
            headers={
                **_page_request("endpoint_post_profile_store_events.rst").headers,
                "content-type": "text/plain",
            },
        ),
        "text/plain",
    ),
    "segment members with a cursor": (
        lambda: _with(
            _page_request("endpoint_get_profile_store_segment_profiles.rst"),
            url=f"{_BASE}/segments/s/profiles?next_token=abc",
        ),
        "next_token",
    ),
    "profile segments with a limit that is no number": (
        lambda: _with(
            _page_request("endpoint_get_profile_segments.rst"), url=f"{_BASE}/profiles/c/p/segments?limit=ten"
        ),
        "limit",
    ),
    "history by week": (
        lambda: _with(
            _page_request("endpoint_get_profile_store_history.rst"),
            url=f"{_BASE}/collections/c/history?scale=week",
        ),
        "scale",
    ),
    "history after a time that is no timestamp": (
        lambda: _with(
            _page_request("endpoint_get_profile_store_history.rst"),
            url=f"{_BASE}/collections/c/history?after=yesterday",
        ),
        "after",
    ),
    "no tenant header": (
        lambda: _with(
            _page_request("endpoint_get_profile_store_stats.rst"), headers={"authorization": "Bearer x"}
        ),
        "amperity-tenant",
    ),
    "no bearer token": (
        lambda: _with(
            _page_request("endpoint_get_profile_store_stats.rst"), headers={"amperity-tenant": "socktown"}
        ),
        "Bearer",
    ),
}


@pytest.mark.parametrize("case", sorted(FORBIDDEN_REQUESTS))
def test_document_rejects_requests_the_pages_rule_out(case: str) -> None:
    build, named = FORBIDDEN_REQUESTS[case]
    problems = request_problems(build())
    assert problems, f"{case}: accepted"
    assert any(named in problem for problem in problems), problems


def _page_response(page: str) -> Any:
    text = PAGE_RESPONSES[page][2]
    assert text is not None
    return _page_json(text)


FORBIDDEN_RESPONSES: dict[str, tuple[str, int, Callable[[], Any]]] = {
    "profile without profile_id": (
        "get-collection-profile",
        200,
        lambda: {
            k: v
            for k, v in _page_response("endpoint_get_profile_store_profile.rst").items()
            if k != "profile_id"
        },
    ),
    "profile with a timestamp that is none": (
        "lookup-profile",
        200,
        lambda: _page_response("endpoint_get_profile_store_lookup.rst") | {"updated_at": "last tuesday"},
    ),
    "profile links that are not lists": (
        "lookup-profile-by-keys",
        200,
        lambda: (
            _page_response("endpoint_post_profile_store_lookup.rst") | {"links": {"email": "a@example.com"}}
        ),
    ),
    "segment members without data": ("list-segment-members", 200, lambda: {"next_token": "x", "total": 3}),
    "history count that is text": (
        "get-collection-history",
        200,
        lambda: {"scale": "day", "data": [{"bucket": "2026-08-19T00:00:00Z", "count": "12"}]},
    ),
    "history at an unknown scale": ("get-collection-history", 200, lambda: {"scale": "week", "data": []}),
    "stats without total_profiles": ("get-collection-stats", 200, lambda: {"link_cardinality": {"email": 1}}),
    "error without message": ("send-event", 503, lambda: {"status": 503}),
    "a body on 202": ("send-event", 202, lambda: {"status": "published"}),
    "an undocumented success": ("send-event", 200, dict),
}


@pytest.mark.parametrize("case", sorted(FORBIDDEN_RESPONSES))
def test_document_rejects_answers_the_pages_rule_out(case: str) -> None:
    op_id, status, build = FORBIDDEN_RESPONSES[case]
    assert response_problems(op_id, status, build()), f"{case}: accepted"


def test_profile_maps_keep_whatever_the_collection_configures() -> None:
    profile = _page_response("endpoint_get_profile_store_profile.rst")
    profile["attributes"] |= {
        "lifetime_orders": 7,
        "vip": True,
        "address": {"city": "Seattle"},
        "tags": ["a"],
    }
    profile["links"] |= {"loyalty_id": ["L-1", "L-2"], "custom_link": []}
    profile["segment_count"] = 3  # a field Amperity adds later is kept, not refused
    assert response_problems("get-collection-profile", 200, profile) == []


# --- a client generated from the document --------------------------------------------------------

GENERATED_PACKAGE = "realtime_document_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], ModuleType]]:
    """Generate a client from the document alone, the way the project generates its package."""
    root = tmp_path_factory.mktemp("generated")
    bindir = Path(sys.executable).parent
    result = subprocess.run(
        [
            str(bindir / "openapi-python-client"),
            "generate",
            "--path",
            str(DOCUMENT_FILE),
            "--config",
            str(PROJECT / "generator-config.yaml"),
            "--custom-template-path",
            str(PROJECT / "openapi" / "templates"),
            "--meta",
            "none",
            "--output-path",
            str(root / GENERATED_PACKAGE),
        ],
        cwd=root,
        env={
            **os.environ,
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
            "RUFF_NO_CACHE": "true",
        },
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    # Anything but the one progress line is a warning, which the project's generation treats as failure.
    assert result.returncode == 0 and output == [f"Generating {root / GENERATED_PACKAGE}"], "\n".join(output)
    # The package root re-exports the hand-written layer, which this stand-alone build lacks; its
    # types module raises the layer's ConfigurationError, so the layer is linked in as the build does.
    (root / GENERATED_PACKAGE / "__init__.py").write_text('"""Generated from openapi/realtime.json."""\n')
    (root / GENERATED_PACKAGE / "custom").symlink_to(PROJECT / "custom", target_is_directory=True)
    sys.path.insert(0, str(root))
    try:
        yield lambda name: importlib.import_module(f"{GENERATED_PACKAGE}.{name}")
    finally:
        sys.path.remove(str(root))
        for name in [
            m for m in sys.modules if m == GENERATED_PACKAGE or m.startswith(GENERATED_PACKAGE + ".")
        ]:
            del sys.modules[name]


@pytest.mark.timeout(300)
def test_generated_modules_are_named_by_tag_and_operation(generated: Callable[[str], ModuleType]) -> None:
    for op_id in EXPECTED_OPERATIONS:
        module = generated("api.realtime." + op_id.replace("-", "_"))
        assert callable(module.asyncio_detailed), op_id


SIGNATURES = {
    "send_event": ["stream_id", "client", "body", "amperity_tenant"],
    "lookup_profile": ["collection_id", "client", "keys", "field_enrich", "amperity_tenant"],
    "lookup_profile_by_keys": ["collection_id", "client", "body", "amperity_tenant"],
    "get_collection_profile": ["collection_id", "profile_id", "client", "enrich", "amperity_tenant"],
    "list_segment_members": ["segment_id", "client", "amperity_tenant"],
    "list_profile_segments": [
        "collection_id",
        "profile_id",
        "client",
        "limit",
        "next_token",
        "amperity_tenant",
    ],
    "get_collection_stats": ["collection_id", "client", "amperity_tenant"],
    "get_collection_history": ["collection_id", "client", "scale", "after", "before", "amperity_tenant"],
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_generated_signatures(generated: Callable[[str], ModuleType], name: str) -> None:
    # amperity_tenant leaves the signatures once the shared overlay moves the header to the client layer.
    signature = inspect.signature(generated(f"api.realtime.{name}").asyncio_detailed)
    assert list(signature.parameters) == SIGNATURES[name]


@attrs.define
class Recorder:
    """A transport that answers every request with one canned answer and keeps the requests."""

    status: int
    body: Any = None
    requests: list[httpx.Request] = attrs.field(factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.body is None:
            return httpx.Response(self.status)
        return httpx.Response(self.status, json=self.body)

    def client(self, generated: Callable[[str], ModuleType]) -> Any:
        module = generated("client")
        token = PLACEHOLDERS["{token}"]
        return module.AuthenticatedClient(base_url=_BASE, token=token).set_httpx_client(
            httpx.Client(
                base_url=_BASE,
                transport=httpx.MockTransport(self),
                headers={"Authorization": f"Bearer {token}"},
            )
        )

    def sent(self) -> PageRequest:
        (request,) = self.requests
        return PageRequest(
            request.method,
            str(request.url),
            {k.lower(): v for k, v in request.headers.items()},
            request.content or None,
        )


def _call(
    generated: Callable[[str], ModuleType], name: str, recorder: Recorder, *args: Any, **kwargs: Any
) -> Any:
    module = generated(f"api.realtime.{name}")
    return module.sync_detailed(
        *args, client=recorder.client(generated), amperity_tenant="socktown", **kwargs
    )


@pytest.mark.parametrize("status", [202, 204])
def test_generated_send_event_sends_the_pages_event_and_tells_published_from_dropped(
    generated: Callable[[str], ModuleType], status: int
) -> None:
    event = json.loads(parse_curl(PAGE_REQUESTS["endpoint_post_profile_store_events.rst"][1]).body or b"")
    recorder = Recorder(status)
    body = generated("models").StreamEvent.from_dict(event)
    answer = _call(generated, "send_event", recorder, "es/web events", body=body)
    assert (answer.status_code, answer.parsed) == (status, None)
    sent = recorder.sent()
    assert sent.url == f"{_BASE}/events/es%2Fweb%20events"
    assert sent.body is not None and json.loads(sent.body) == event
    assert sent.headers["content-length"] == str(len(sent.body))
    assert sent.headers["content-type"] == "application/json"
    assert request_problems(sent) == []


def test_generated_send_event_reads_a_503_as_the_error_body(generated: Callable[[str], ModuleType]) -> None:
    error = {"status": 503, "message": "Retry the request", "request_id": "r-1", "trace_id": "t-1"}
    answer = _call(
        generated,
        "send_event",
        Recorder(503, error),
        "es",
        body=generated("models").StreamEvent.from_dict({}),
    )
    assert answer.status_code == 503
    assert (answer.parsed.message, answer.parsed.request_id, answer.parsed.trace_id) == (
        "Retry the request",
        "r-1",
        "t-1",
    )


def test_generated_lookup_sends_keys_as_the_page_shows(generated: Callable[[str], ModuleType]) -> None:
    recorder = Recorder(200, _page_response("endpoint_get_profile_store_lookup.rst"))
    keys = generated("models").KeychainKeys.from_dict({"email": "customer+vip@example.com"})
    _call(generated, "lookup_profile", recorder, "pc-customers", keys=keys, field_enrich=True)
    sent = recorder.sent()
    assert urllib.parse.parse_qsl(urllib.parse.urlsplit(sent.url).query) == [
        ("email", "customer+vip@example.com"),
        ("_enrich", "true"),
    ]
    assert request_problems(sent) == []


def test_generated_lookup_by_keys_sends_the_pages_body_and_reads_the_profile(
    generated: Callable[[str], ModuleType],
) -> None:
    page_body = json.loads(parse_curl(PAGE_REQUESTS["endpoint_post_profile_store_lookup.rst"][1]).body or b"")
    recorder = Recorder(200, _page_response("endpoint_post_profile_store_lookup.rst"))
    answer = _call(
        generated,
        "lookup_profile_by_keys",
        recorder,
        "pc-customers",
        body=generated("models").KeychainLookup.from_dict(page_body),
    )
    sent = recorder.sent()
    assert sent.body is not None and json.loads(sent.body) == page_body
    assert request_problems(sent) == []
    profile = answer.parsed
    assert (profile.collection_id, profile.profile_id) == ("pc-customers", "p-6b1f0c2e")
    assert profile.attributes["email"] == "customer@example.com"
    assert profile.links["phone"] == ["+15555550100"]
    assert profile.ticked_at.isoformat() == "2026-08-19T09:12:45+00:00"


def test_generated_lookup_reads_not_found(generated: Callable[[str], ModuleType]) -> None:
    error = {"status": 404, "message": "No matching profile was found."}
    keys = generated("models").KeychainKeys.from_dict({"email": "nobody@example.com"})
    answer = _call(generated, "lookup_profile", Recorder(404, error), "pc-customers", keys=keys)
    assert (answer.status_code, answer.parsed.message) == (404, "No matching profile was found.")


def test_generated_profile_segments_send_the_cursor_and_read_the_page(
    generated: Callable[[str], ModuleType],
) -> None:
    recorder = Recorder(200, _page_response("endpoint_get_profile_segments.rst"))
    answer = _call(
        generated,
        "list_profile_segments",
        recorder,
        "pc-customers",
        "p-6b1f0c2e",
        limit=100,
        next_token="ABCd1fghIJk2l3M",
    )
    sent = recorder.sent()
    assert (
        sent.url == f"{_BASE}/profiles/pc-customers/p-6b1f0c2e/segments?limit=100&next_token=ABCd1fghIJk2l3M"
    )
    assert request_problems(sent) == []
    page = answer.parsed
    assert [(s.segment_id, s.segment_name) for s in page.data] == [("rts-high-value", "High value")]
    assert (page.next_token, page.total) == ("ABCd1fghIJk2l3M", 0)


def test_generated_segment_members_read_the_page_with_its_unusable_cursor(
    generated: Callable[[str], ModuleType],
) -> None:
    recorder = Recorder(200, _page_response("endpoint_get_profile_store_segment_profiles.rst"))
    answer = _call(generated, "list_segment_members", recorder, "rts-high-value")
    assert recorder.sent().url == f"{_BASE}/segments/rts-high-value/profiles"
    assert [m.profile_id for m in answer.parsed.data] == ["p-6b1f0c2e"]
    assert answer.parsed.next_token == "ABCd1fghIJk2l3M"


def test_generated_history_sends_its_window_and_reads_the_buckets(
    generated: Callable[[str], ModuleType],
) -> None:
    models = generated("models")
    recorder = Recorder(200, _page_response("endpoint_get_profile_store_history.rst"))
    after = datetime.datetime(2026, 8, 1, tzinfo=datetime.UTC)
    before = datetime.datetime(2026, 8, 20, tzinfo=datetime.UTC)
    answer = _call(
        generated,
        "get_collection_history",
        recorder,
        "pc-customers",
        scale=models.HistoryScale.HOUR,
        after=after,
        before=before,
    )
    sent = recorder.sent()
    assert urllib.parse.parse_qsl(urllib.parse.urlsplit(sent.url).query) == [
        ("scale", "hour"),
        ("after", "2026-08-01T00:00:00Z"),
        ("before", "2026-08-20T00:00:00Z"),
    ]
    assert request_problems(sent) == []
    assert answer.parsed.scale is models.HistoryScale.DAY
    assert [(b.bucket.isoformat(), b.count) for b in answer.parsed.data] == [("2026-08-19T09:12:45+00:00", 0)]


def test_generated_stats_and_profile_read_the_pages_answers(generated: Callable[[str], ModuleType]) -> None:
    stats = _call(
        generated,
        "get_collection_stats",
        Recorder(200, _page_response("endpoint_get_profile_store_stats.rst")),
        "pc-customers",
    )
    assert (stats.parsed.total_profiles, stats.parsed.link_cardinality.to_dict()) == (
        0,
        {"email": 0, "phone": 0},
    )
    recorder = Recorder(200, _page_response("endpoint_get_profile_store_profile.rst"))
    profile = _call(generated, "get_collection_profile", recorder, "pc-customers", "p-6b1f0c2e", enrich=True)
    assert recorder.sent().url == f"{_BASE}/profiles/pc-customers/p-6b1f0c2e?enrich=true"
    assert profile.parsed.to_dict() == _page_response("endpoint_get_profile_store_profile.rst") | {
        "created_at": "2026-08-19T09:12:45Z",
        "updated_at": "2026-08-19T09:12:45Z",
        "ticked_at": "2026-08-19T09:12:45Z",
    }
