"""The generated models and package as a user meets them: reprs, constructors, nulls, datetimes."""

from __future__ import annotations

import datetime
import inspect
from typing import Any

import pytest

import amperity_async
from amperity_async.api.workflow import list_workflows
from amperity_async.custom.errors import ConfigurationError
from amperity_async.models import (
    AuditEvent,
    ErrorResponse,
    ProfileAttributes,
    ProfileFilter,
    Segment,
    SegmentList,
    Workflow,
    WorkflowRunRequest,
    WorkflowRunRequestRunMode,
)
from amperity_async.types import UNSET, Unset

WORKFLOW: dict[str, Any] = {
    "id": "wf-1",
    "state": "running",
    "type": "courier.group/run",
    "name": "Daily",
    "tenant": "acme",
    "created_at": "2026-06-19T04:00:18.764Z",
}


# reprs


def test_a_repr_shows_the_fields_that_were_sent_and_no_unset_ones() -> None:
    run = Workflow.from_dict(WORKFLOW)
    text = repr(run)
    assert "Unset" not in text and "UNSET" not in text and "object at 0x" not in text
    assert text == (
        "Workflow(id='wf-1', state='running', type_='courier.group/run', name='Daily', tenant='acme', "
        "created_at=datetime.datetime(2026, 6, 19, 4, 0, 18, 764000, tzinfo=datetime.timezone.utc))"
    )


def test_a_repr_shows_nulls_and_additional_properties_as_keywords() -> None:
    run = Workflow.from_dict(dict(WORKFLOW, ended_at=None, new_field=1, **{"odd-name": 2, "class": 3}))
    assert repr(run).endswith("ended_at=None, new_field=1, **{'odd-name': 2, 'class': 3})")
    assert repr(ProfileFilter(first_name="Daniel")) == "ProfileFilter(first_name='Daniel')"
    assert repr(SegmentList(data=[Segment(id="s-1", name="Loyal", status="active")])) == (
        "SegmentList(data=[Segment(id='s-1', name='Loyal', status='active')])"
    )


def test_unset_reads_as_unset() -> None:
    assert repr(UNSET) == "UNSET"
    assert "object at 0x" not in str(inspect.signature(list_workflows.asyncio))  # what help() shows
    assert str(inspect.signature(list_workflows.asyncio).parameters["next_token"]).endswith("= UNSET")


# constructors


def test_models_with_additional_properties_take_them_as_keywords() -> None:
    profile_filter = ProfileFilter(first_name="Daniel", city="Seattle")
    assert profile_filter.to_dict() == {"first_name": "Daniel", "city": "Seattle"}
    assert ProfileAttributes(email="d@example.com")["email"] == "d@example.com"
    request = WorkflowRunRequest(config_id="cg-1", run_mode=WorkflowRunRequestRunMode.FULL, priority="high")
    assert request.to_dict() == {"config_id": "cg-1", "run_mode": "full", "priority": "high"}
    assert ProfileFilter.from_dict({"last_name": "Smith"}).to_dict() == {"last_name": "Smith"}


def test_a_keyword_that_is_the_wire_name_of_a_renamed_field_is_refused() -> None:
    fields = dict(
        id="wf-1", state="running", name="n", tenant="t", created_at=datetime.datetime.now(datetime.UTC)
    )
    with pytest.raises(TypeError, match=r"Workflow\(\) got type=\.\.\., the wire name of its field type_"):
        Workflow(type_="x", type="y", **fields)  # type: ignore[arg-type]
    assert Workflow(type_="x", **fields).to_dict()["type"] == "x"  # type: ignore[arg-type]


def test_required_fields_are_still_required() -> None:
    with pytest.raises(TypeError, match="config_id"):
        WorkflowRunRequest()  # type: ignore[call-arg]


# null and absent


def test_null_optional_fields_parse_as_none_and_round_trip() -> None:
    body = dict(
        WORKFLOW, ended_at=None, error=None, task_instances=None, warn_after_ms=None, principal_id=None
    )
    run = Workflow.from_dict(body)
    assert (run.ended_at, run.error, run.task_instances, run.warn_after_ms, run.principal_id) == (None,) * 5
    assert run.launched_version is UNSET
    assert run.to_dict() == body
    page = SegmentList.from_dict({"data": [], "next_token": None, "total": None})
    assert page.next_token is None and page.total is None
    assert ErrorResponse.from_dict({"status": 429, "message": "slow", "request_id": None}).request_id is None


def test_absent_fields_stay_absent_when_written_back() -> None:
    assert Workflow.from_dict(WORKFLOW).to_dict() == WORKFLOW
    assert isinstance(Workflow.from_dict(WORKFLOW).ended_at, Unset)


def test_a_required_field_that_is_null_or_missing_still_fails() -> None:
    with pytest.raises(KeyError):
        AuditEvent.from_dict({"event_id": "e-1"})
    with pytest.raises(TypeError):
        Workflow.from_dict(dict(WORKFLOW, created_at=None))


# datetimes


def test_timestamps_from_the_server_are_aware_and_those_without_offset_are_utc() -> None:
    run = Workflow.from_dict(
        dict(WORKFLOW, created_at="2026-06-19T04:00:18", ended_at="2026-06-19T06:00:00+02:00")
    )
    assert run.created_at == datetime.datetime(2026, 6, 19, 4, 0, 18, tzinfo=datetime.UTC)
    assert isinstance(run.ended_at, datetime.datetime)
    assert run.ended_at.utcoffset() == datetime.timedelta(hours=2)
    assert run.to_dict()["ended_at"] == "2026-06-19T04:00:00Z"


def test_a_naive_datetime_in_a_body_names_its_field() -> None:
    request = WorkflowRunRequest(config_id="cg-1", range_to=datetime.datetime(2026, 4, 1))
    with pytest.raises(
        ConfigurationError, match=r"range_to='2026-04-01T00:00:00' is a naive datetime"
    ) as info:
        request.to_dict()
    assert isinstance(info.value, ValueError)


# the package


def test_the_package_docstring_explains_the_library() -> None:
    doc = amperity_async.__doc__ or ""
    assert "A client library for accessing" not in doc
    for name in ("AmperityClient", "paginate", "amperity_async.models", "UNSET", "AmperityError"):
        assert name in doc
    assert all(name in amperity_async.__all__ for name in ("AmperityClient", "PaginationGuards", "UNLIMITED"))
