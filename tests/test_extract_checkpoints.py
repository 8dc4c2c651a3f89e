"""Checkpoints that cannot lie, and one writer per output, through the real CLI.

Each test acts as an unlucky user: a run that fails before its first page, a file moved, cut,
appended to, edited or replaced, a checkpoint doctored or from another tenant, a second process on
the same output. The outcome is always rows equal to a clean run's, or a one-line refusal with a
non-zero status that leaves the file as it was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from extract_support import checkpoint_of, cli_env, interrupted, one_line, run_cli, running, state, wait_until

from amperity_async.custom.extract import Checkpoint, OutputLockedError
from amperity_async.custom.extract.output import FolderLock, OutputFile
from amperity_async.testing import FakeTenantConfig, start_in_thread

EVENTS = ["extract", "list_events", "--limit", "20"]


@pytest.fixture
def fake_tenant_config() -> FakeTenantConfig:
    return FakeTenantConfig(rows=600, indexes=1, profiles_per_index=40, seed=11)


@pytest.fixture
def reference(fake_tenant: Any, tmp_path: Path) -> bytes:
    out = tmp_path / "reference.jsonl"
    result = run_cli([*EVENTS, "--out", str(out)], cli_env(fake_tenant))
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert len(data.splitlines()) == 600
    return data


@pytest.fixture
def partial(fake_tenant: Any, tmp_path: Path) -> Path:
    """An output whose extraction was killed after a few pages."""
    out = tmp_path / "events.jsonl"
    interrupted([*EVENTS, "--out", str(out)], cli_env(fake_tenant), out, pages=4)
    assert 0 < len(out.read_bytes().splitlines()) < 600
    return out


def resume(out: Path, env: dict[str, str]) -> Any:
    return run_cli([*EVENTS, "--out", str(out), "--resume"], env)


# 1. stale checkpoints


@pytest.mark.parametrize("earlier", ["finished", "interrupted"])
def test_a_fresh_run_that_fails_before_its_first_page_leaves_no_stale_checkpoint(
    fake_tenant: Any, tmp_path: Path, reference: bytes, earlier: str
) -> None:
    env = cli_env(fake_tenant)
    out = tmp_path / "events.jsonl"
    if earlier == "finished":
        assert run_cli([*EVENTS, "--out", str(out)], env).returncode == 0
    else:
        interrupted([*EVENTS, "--out", str(out)], env, out, pages=4)
    rotated = cli_env(fake_tenant, AMPERITY_CLIENT_SECRET="rotated-secret-value")
    failed = run_cli([*EVENTS, "--out", str(out), "--overwrite"], rotated)
    assert failed.returncode == 1 and "401" in one_line(failed)
    assert "rotated-secret-value" not in failed.stderr
    assert state(out)["rows"] == 0 and out.read_bytes() == b""  # the checkpoint says what is there: nothing

    resumed = resume(out, env)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == reference  # not 0 bytes claiming 600 rows, not NUL bytes
    assert state(out)["done"] is True and "600" in resumed.stderr


def test_rerunning_without_resume_refuses_to_truncate_a_partial_output(
    fake_tenant: Any, partial: Path, reference: bytes
) -> None:
    before = partial.read_bytes()
    again = run_cli([*EVENTS, "--out", str(partial)], cli_env(fake_tenant))
    assert again.returncode == 2
    assert "--resume" in one_line(again) and "--overwrite" in again.stderr
    assert partial.read_bytes() == before
    resumed = resume(partial, cli_env(fake_tenant))
    assert resumed.returncode == 0, resumed.stderr
    assert partial.read_bytes() == reference


def test_resume_refuses_when_the_output_was_moved_and_resumes_once_it_is_back(
    fake_tenant: Any, partial: Path, tmp_path: Path, reference: bytes
) -> None:
    moved = tmp_path / "elsewhere.jsonl"
    partial.rename(moved)
    refused = resume(partial, cli_env(fake_tenant))
    assert refused.returncode == 2 and "gone" in one_line(refused)
    assert not partial.exists()  # nothing new was started in its place
    moved.rename(partial)
    resumed = resume(partial, cli_env(fake_tenant))
    assert resumed.returncode == 0, resumed.stderr
    assert partial.read_bytes() == reference


def _cut_before_the_last_checkpoint(path: Path) -> None:
    committed = json.loads(checkpoint_of(path).read_text())["committed"]["length"]
    with open(path, "r+b") as handle:
        handle.truncate(committed - 7)


def _append(path: Path) -> None:
    with open(path, "ab") as handle:
        handle.write(b'{"event_id": "ae-foreign"}\n')


def _edit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _replace(path: Path) -> None:
    copy = path.with_name("copy")
    shutil.copyfile(path, copy)
    copy.replace(path)  # same bytes, another file


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (_cut_before_the_last_checkpoint, "shorter"),
        (_append, "longer"),
        (_edit, "differ"),
        (_replace, "not the file"),
    ],
    ids=["shorter", "longer", "edited", "replaced"],
)
def test_resume_refuses_an_output_changed_after_its_checkpoint(
    fake_tenant: Any, partial: Path, tamper: Any, expected: str
) -> None:
    tamper(partial)
    changed = partial.read_bytes()
    refused = resume(partial, cli_env(fake_tenant))
    assert refused.returncode == 2
    assert expected in one_line(refused) and "--overwrite" in refused.stderr
    assert partial.read_bytes() == changed


def _doctor(out: Path, change: Any) -> None:
    document = json.loads(checkpoint_of(out).read_text())
    change(document)
    checkpoint_of(out).write_text(json.dumps(document))


def _wrong_offset(document: dict[str, Any]) -> None:
    for side in ("committed", "pending"):
        if document[side] is not None:
            document[side]["length"] += 4000


def _null_cursor(document: dict[str, Any]) -> None:
    for side in ("committed", "pending"):
        if document[side] is not None:
            document[side].update(next_token=None, step=0)


def _old_format(document: dict[str, Any]) -> None:
    document.clear()
    document.update(
        operation="list-events", params={}, next_token=None, offset=0, rows=80, pages=4, done=False
    )


def _garbage(document: dict[str, Any]) -> None:
    document["committed"]["rows"] = "many"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # Past the end of the file when the run was stopped between pages, else inside a page.
        (_wrong_offset, ("differ", "shorter")),
        (_null_cursor, ("no cursor",)),
        (_old_format, ("another version",)),
        (_garbage, ("damaged",)),
    ],
    ids=["wrong-offset", "null-cursor", "old-format", "garbage"],
)
def test_resume_refuses_a_doctored_checkpoint(
    fake_tenant: Any, partial: Path, change: Any, expected: tuple[str, ...]
) -> None:
    kept = partial.read_bytes()
    _doctor(partial, change)
    refused = resume(partial, cli_env(fake_tenant))
    assert refused.returncode == 2 and any(word in one_line(refused) for word in expected)
    assert partial.read_bytes() == kept  # no NUL padding, no rows written twice


def test_resume_refuses_a_checkpoint_of_another_tenant(fake_tenant: Any, partial: Path) -> None:
    kept = partial.read_bytes()
    with start_in_thread(FakeTenantConfig(rows=600, seed=99, tenant="other")) as other:
        refused = resume(partial, cli_env(other))
        other_url = other.base_url
    assert refused.returncode == 2
    line = one_line(refused)
    assert "tenant 'acme'" in line and other_url in line
    assert partial.read_bytes() == kept


def test_resume_refuses_other_parameters(fake_tenant: Any, partial: Path) -> None:
    refused = run_cli(
        ["extract", "list_events", "--limit", "50", "--out", str(partial), "--resume"], cli_env(fake_tenant)
    )
    assert refused.returncode == 2 and "params" in one_line(refused)


# 2. one writer per output


def test_a_second_writer_fails_at_once_and_the_first_finishes_intact(
    fake_tenant: Any, tmp_path: Path, reference: bytes
) -> None:
    env = cli_env(fake_tenant)
    out = tmp_path / "events.jsonl"
    # The first writer is held to 2 pages/s (30 pages: some 15 s), so that it is still writing while
    # the second writers start, however slowly a loaded machine starts them.
    with running([*EVENTS, "--out", str(out), "--control-plane-rate", "2"], env) as first:
        wait_until(lambda: state(out).get("pages", 0) >= 2, "the first writer's pages")
        for mode in ([], ["--overwrite"], ["--resume"]):
            second = run_cli([*EVENTS, "--out", str(out), *mode], env, timeout=30)
            assert second.returncode == 1
            assert "being written by another extraction" in one_line(second)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert out.read_bytes() == reference


def test_a_second_extract_all_on_the_same_folder_fails_at_once(fake_tenant: Any, tmp_path: Path) -> None:
    env = cli_env(fake_tenant)
    folder = tmp_path / "all"
    with running(["extract-all", "--out", str(folder), "--limit", "20"], env) as first:
        wait_until(lambda: (folder / "extract-all.checkpoint").exists(), "the first run's manifest")
        second = run_cli(["extract-all", "--out", str(folder), "--resume"], env, timeout=30)
        assert second.returncode == 1 and "being written by another extraction" in one_line(second)
        _, err = first.communicate(timeout=180)
    assert first.returncode == 0, err


def test_locks_hold_within_one_process_too(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    with OutputFile.open(out):
        with pytest.raises(OutputLockedError, match="another extraction"):
            OutputFile.open(out)
    with OutputFile.open(out):
        pass  # released when the first one closed
    with FolderLock(tmp_path):
        with pytest.raises(OutputLockedError):
            FolderLock(tmp_path)


def test_the_checkpoint_summary_is_what_the_file_durably_holds(fake_tenant: Any, partial: Path) -> None:
    checkpoint = Checkpoint.load(checkpoint_of(partial))
    assert checkpoint is not None
    lines = len(partial.read_bytes().splitlines())
    if checkpoint.pending is None:
        assert lines == checkpoint.rows
    else:  # killed between the checkpoint naming a page and that page being complete
        assert checkpoint.rows <= lines <= checkpoint.pending.rows
    assert (checkpoint.rows, checkpoint.pages, checkpoint.done) == (
        state(partial)["rows"],
        state(partial)["pages"],
        False,
    )
    assert checkpoint.next_token == checkpoint.committed.cursor.next_token and checkpoint.next_token
