"""Each overlay repair is needed: with the repair, the normalized spec is right; without it, the
defect it was written for comes back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from spec_support import (
    OPENAPI,
    normalize_with_overlays,
    normalized_spec,
    operations,
    references,
    repaired_documents,
    resolve,
)

from tools.specs.normalize import NormalizeError

Check = Callable[[dict[str, Any]], bool]


def _params(document: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    return [resolve(document, p) for p in operation.get("parameters", [])]


def no_example_defaults_on_operation_parameters(document: dict[str, Any]) -> bool:
    return all(
        "default" not in p.get("schema", {})
        for _, _, op in operations(document).values()
        for p in op.get("parameters", [])
        if "$ref" not in p
    )


def no_defaults_on_shared_parameters(document: dict[str, Any]) -> bool:
    shared = document["components"].get("parameters", {})
    return all("default" not in p.get("schema", {}) for p in shared.values())


def run_workflow_body_sends_no_made_up_values(document: dict[str, Any]) -> bool:
    body = document["components"]["schemas"].get("WorkflowRunRequest", {}).get("properties", {})
    return all("default" not in prop for prop in body.values())


def headers_are_not_operation_parameters(document: dict[str, Any]) -> bool:
    for _, _, op in operations(document).values():
        for param in op.get("parameters", []):
            if "$ref" in param:
                if param["$ref"].rsplit("/", 1)[-1] in {"ApiVersionHeader", "AmperityTenant"}:
                    return False
            elif param.get("in") == "header":
                return False
    return True


def shared_header_definitions_are_gone(document: dict[str, Any]) -> bool:
    shared = document["components"].get("parameters", {})
    return "ApiVersionHeader" not in shared and "AmperityTenant" not in shared


def error_body_has_support_identifiers(document: dict[str, Any]) -> bool:
    properties = document["components"]["schemas"]["ErrorResponse"]["properties"]
    return "request_id" in properties and "trace_id" in properties


def no_schema_forbids_new_fields(document: dict[str, Any]) -> bool:
    return all(s.get("additionalProperties") is not False for s in document["components"]["schemas"].values())


def every_reference_resolves(document: dict[str, Any]) -> bool:
    try:
        for ref in references(document):
            resolve(document, {"$ref": ref})
    except KeyError:
        return False
    return True


def rate_limit_response_is_defined(document: dict[str, Any]) -> bool:
    return "TooManyRequests" in document["components"].get("responses", {}) and every_reference_resolves(
        document
    )


def every_operation_declares_429_and_503(document: dict[str, Any]) -> bool:
    return all({"429", "503"} <= set(op["responses"]) for _, _, op in operations(document).values())


def list_pages_require_data(document: dict[str, Any]) -> bool:
    pages = [
        s
        for s in document["components"]["schemas"].values()
        if s.get("properties", {}).get("data", {}).get("type") == "array"
        and "next_token" in s.get("properties", {})
    ]
    return all("data" in s.get("required", []) for s in pages)


def lists_without_a_usable_cursor_are_marked(document: dict[str, Any]) -> bool:
    """Every list either takes a cursor it can follow or says it has none (one answer per window)."""
    for method, _, op in operations(document).values():
        names = {p["name"] for p in _params(document, op)}
        if method != "get" or "with_total" not in names:
            continue
        marked = op.get("x-amperity-pagination") == "none"
        if not marked and not {"limit", "next_token"} <= names:
            return False
    return True


def ingest_jobs_window_is_at_most_seven_days(document: dict[str, Any]) -> bool:
    found = operations(document).get("list-ingest-jobs")
    return found is None or found[2].get("x-amperity-max-window-days") == 7


def get_profile_has_distinct_path_parameters(document: dict[str, Any]) -> bool:
    if not any(path.startswith("/indexes/") for path in document["paths"]):
        return True  # not the Profile API
    found = operations(document).get("get-profile")
    if found is None:
        return False
    _, path, op = found
    names = [p["name"] for p in _params(document, op) if p["in"] == "path"]
    return path == "/indexes/{id}/profiles/{profile_id}" and names == ["id", "profile_id"]


def no_operation_id_is_defined_twice(document: dict[str, Any]) -> bool:
    ids = [
        op["operationId"]
        for item in document["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
    ]
    return len(ids) == len(set(ids)) and "/indexes/{id}/profiles/{id}" not in document["paths"]


def list_profiles_filter_is_a_deep_object(document: dict[str, Any]) -> bool:
    if "list-profiles" not in operations(document):
        return True  # not the Profile API
    _, _, op = operations(document)["list-profiles"]
    (param,) = [p for p in _params(document, op) if p["name"] == "filter"]
    if param.get("style") != "deepObject" or "schema" not in param:
        return False
    try:
        schema = resolve(document, param["schema"])
    except KeyError:
        return False
    return schema.get("type") == "object" and schema.get("additionalProperties") == {"type": "string"}


def every_operation_names_its_api(document: dict[str, Any]) -> bool:
    return all(
        op.get("x-amperity-api") in {"control-plane", "profile", "realtime"}
        for _, _, op in operations(document).values()
    )


# (overlay file, fragment of the action's target, what holds only with the action)
REPAIRS: list[tuple[str, str, Check]] = [
    ("common.yaml", "$.paths.*.*.parameters[?@.schema.default]", no_example_defaults_on_operation_parameters),
    ("common.yaml", "$.components.parameters[?@.schema.default]", no_defaults_on_shared_parameters),
    ("common.yaml", "properties[?@.default == @.example]", run_workflow_body_sends_no_made_up_values),
    ("common.yaml", "@.name == 'api-version'", headers_are_not_operation_parameters),
    (
        "common.yaml",
        "$.components.parameters['ApiVersionHeader','AmperityTenant']",
        shared_header_definitions_are_gone,
    ),
    ("common.yaml", "$.components.schemas.ErrorResponse", error_body_has_support_identifiers),
    ("common.yaml", "[?@.additionalProperties == false]", no_schema_forbids_new_fields),
    ("common.yaml", "$.components.responses", rate_limit_response_is_defined),
    (
        "common.yaml",
        "$.paths.*['get','put','post','patch','delete'].responses",
        every_operation_declares_429_and_503,
    ),
    ("common.yaml", "@.properties.data.type == 'array'", list_pages_require_data),
    ("profile.yaml", "$[?@['/indexes/{id}/profiles/{id}']]", get_profile_has_distinct_path_parameters),
    (
        "profile.yaml",
        "$.paths['/indexes/{id}/profiles/{profile_id}']",
        get_profile_has_distinct_path_parameters,
    ),
    ("profile.yaml", "$.paths['/indexes/{id}/profiles/{id}']", no_operation_id_is_defined_twice),
    ("profile.yaml", ".get.parameters[-1]", get_profile_has_distinct_path_parameters),
    ("profile.yaml", "@.schema.type == 'string'", list_profiles_filter_is_a_deep_object),
    ("profile.yaml", "== 'filter'].schema", list_profiles_filter_is_a_deep_object),
    ("profile.yaml", "!@.schema]", list_profiles_filter_is_a_deep_object),
    ("profile.yaml", "$.components.schemas", list_profiles_filter_is_a_deep_object),
    ("control-plane.yaml", "$.paths.*['get','put','post','patch','delete']", every_operation_names_its_api),
    ("control-plane.yaml", "'list-ingest-jobs'", lists_without_a_usable_cursor_are_marked),
    ("profile.yaml", "$.paths.*['get','put','post','patch','delete']", every_operation_names_its_api),
]
# Repairs without which the spec cannot be merged at all.
MARKERS = [
    ("control-plane.yaml", "$.paths.*['get','put','post','patch','delete']"),
    ("profile.yaml", "$.paths.*['get','put','post','patch','delete']"),
]


@pytest.fixture(scope="module")
def repaired(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return repaired_documents(tmp_path_factory.mktemp("overlays"))


@pytest.mark.parametrize(
    ("overlay", "fragment", "check"), REPAIRS, ids=[f"{o}:{c.__name__}" for o, _, c in REPAIRS]
)
def test_repair_is_needed(
    overlay: str, fragment: str, check: Check, repaired: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    for file, document in repaired.items():
        assert check(document), f"repaired {file} should satisfy {check.__name__}"
    without = repaired_documents(tmp_path, drop=(overlay, _exact(overlay, fragment)))
    broken = [file for file, document in without.items() if not check(document)]
    assert broken, f"{check.__name__} holds even without the {overlay} action on {fragment}"


@pytest.mark.parametrize(
    "check", sorted({c for _, _, c in REPAIRS}, key=lambda c: c.__name__), ids=lambda c: c.__name__
)
def test_normalized_spec_carries_every_repair(check: Check) -> None:
    assert check(normalized_spec())


@pytest.mark.parametrize(("overlay", "fragment"), MARKERS)
def test_operations_must_be_marked_with_their_api(overlay: str, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(NormalizeError, match="x-amperity-api"):
        normalize_with_overlays(tmp_path, drop=(overlay, _exact(overlay, fragment)))


def _targets(overlay: str) -> list[str]:
    data = yaml.safe_load((OPENAPI / "overlays" / overlay).read_text(encoding="utf-8"))
    return [" ".join(a["target"].split()) for a in data["actions"]]


def _exact(overlay: str, fragment: str) -> str:
    """The full target the fragment names (itself when it is a whole target)."""
    targets = _targets(overlay)
    if fragment in targets:
        return fragment
    (target,) = [t for t in targets if fragment in t]
    return target


def test_every_overlay_action_has_a_test() -> None:
    covered = [(o, _exact(o, f)) for o, f, _ in REPAIRS]
    actions = {(p.name, t) for p in (OPENAPI / "overlays").glob("*.yaml") for t in _targets(p.name)}
    assert actions - set(covered) == set(), "overlay actions without a test"
    assert len(covered) == len(set(covered)), "two tests name the same action"


def test_ingest_jobs_carry_their_documented_window() -> None:
    assert ingest_jobs_window_is_at_most_seven_days(normalized_spec())
