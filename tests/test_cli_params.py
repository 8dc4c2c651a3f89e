"""``--param`` values decoded by the generated functions' real types; api versions from the index."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from extract_support import cli_env, run_cli

from amperity_async._operations import API_VERSIONS, OPERATIONS
from amperity_async.custom.cli import build_parser, connection
from amperity_async.custom.cli.params import decode_arguments
from amperity_async.custom.errors import ConfigurationError
from amperity_async.custom.operations import REGISTRY, OperationInfo, OperationRegistry
from amperity_async.models.get_workflow_view import GetWorkflowView
from amperity_async.models.profile_filter import ProfileFilter
from amperity_async.testing import FakeTenantConfig


def op(name: str) -> OperationInfo:
    info = REGISTRY.get(name)
    assert info is not None
    return info


@pytest.fixture
def fake_tenant_config() -> FakeTenantConfig:
    return FakeTenantConfig(rows=50, indexes=1, profiles_per_index=300, seed=3, rate_limits=False)


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("form", [["filter=first_name:{name}"], ["filter[first_name]={name}"]])
def test_the_documented_filter_example_selects_exactly_the_matching_profiles(
    fake_tenant: Any, tmp_path: Path, form: list[str]
) -> None:
    env = cli_env(fake_tenant)
    indexes = tmp_path / "indexes.jsonl"
    assert run_cli(["extract", "list_indexes", "--out", str(indexes)], env).returncode == 0
    index = rows(indexes)[0]["id"]
    everyone = tmp_path / "all.jsonl"
    assert (
        run_cli(
            ["extract", "list_profiles", "--param", f"id={index}", "--out", str(everyone)], env
        ).returncode
        == 0
    )
    names = [p["attributes"]["first_name"] for p in rows(everyone) if "first_name" in p.get("attributes", {})]
    name = names[0]
    expected = [p for p in rows(everyone) if p.get("attributes", {}).get("first_name") == name]

    chosen = tmp_path / "chosen.jsonl"
    params = [arg for f in form for arg in ("--param", f.format(name=name))]
    result = run_cli(
        ["extract", "list_profiles", "--param", f"id={index}", *params, "--out", str(chosen)], env
    )
    assert result.returncode == 0, result.stderr
    assert rows(chosen) == expected and 0 < len(expected) < 300


def test_scalars_decode_by_their_annotations() -> None:
    pairs = [
        ("limit", "5"),
        ("with_total", "TRUE"),
        ("created_from", "2026-01-01"),
        ("state", "succeeded"),
        ("type", "courier"),
    ]
    decoded = decode_arguments(op("list_workflows"), pairs)
    assert decoded.positional == ()
    assert decoded.params == {
        "limit": 5,
        "with_total": True,
        "created_from": datetime(2026, 1, 1, tzinfo=UTC),
        "state": "succeeded",
        "type_": "courier",
    }


def test_enums_decode_by_value() -> None:
    member = list(GetWorkflowView)[-1]
    decoded = decode_arguments(op("get_workflow"), [("workflow-id", "wf-1"), ("view", member.value.upper())])
    assert decoded.positional == ("wf-1",)
    assert decoded.params == {"view": member}
    with pytest.raises(ConfigurationError, match="one of " + ", ".join(v.value for v in GetWorkflowView)):
        decode_arguments(op("get_workflow"), [("workflow-id", "wf-1"), ("view", "everything")])


def test_filters_are_built_as_their_model_never_a_lookalike() -> None:
    both = decode_arguments(
        op("list_profiles"),
        [("id", "idx-1"), ("filter", "first_name:Daniel, city:Oslo"), ("filter[email]", "d@example.com")],
    )
    value = both.params["filter_"]
    assert type(value) is ProfileFilter
    assert value.to_dict() == {"first_name": "Daniel", "city": "Oslo", "email": "d@example.com"}
    assert both.positional == ("idx-1",)


@pytest.mark.parametrize(
    ("name", "pairs", "message"),
    [
        ("list_workflows", [("limit", "ten")], "limit='ten' is not a whole number"),
        ("list_workflows", [("with_total", "maybe")], "is not true or false"),
        ("list_workflows", [("created_from", "yesterday")], "ISO-8601"),
        ("list_workflows", [("colour", "blue")], "no parameter 'colour'; it takes: created_from"),
        ("list_workflows", [("limit[x]", "1")], "limit[...] is not a filter"),
        ("list_workflows", [("limit", "1"), ("limit", "2")], "given 2 times"),
        ("list_profiles", [("id", "i"), ("filter", "first_name")], "ATTRIBUTE:VALUE"),
        ("list_profiles", [("filter", "first_name:D")], "needs --param id=..."),
    ],
)
def test_bad_values_name_the_parameter_and_the_expected_type(
    name: str, pairs: list[tuple[str, str]], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        decode_arguments(op(name), pairs)
    assert message in str(caught.value)


def test_api_versions_default_to_the_operation_index(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = {
        **API_VERSIONS,
        "control-plane": {"default_version": "2031-02-03", "versions": ["2031-02-03"]},
    }
    monkeypatch.setattr(connection, "REGISTRY", OperationRegistry(OPERATIONS, versions))
    args = build_parser().parse_args(["extract", "list_segment", "--tenant", "acme", "--token", "t"])
    client = connection.client_from(args)
    assert client.api_versions == {
        "control-plane": "2031-02-03",
        "profile": REGISTRY.default_version("profile"),
    }
    chosen = build_parser().parse_args(
        ["extract", "list_segment", "--tenant", "a", "--token", "t", "--api-version", "x"]
    )
    assert connection.client_from(chosen).api_versions["control-plane"] == "x"
