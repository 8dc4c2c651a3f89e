"""mypy and pyright, strict, from a folder outside the repository, against the editable install.

Users type-check their own programs against the installed package: the example programs of
tests/typing and the README's examples must pass both checkers, and the deliberate mistakes of
tests/typing/mistakes (on generated functions, the resource view and ``client.call``) must be
reported by both. (test_packaging.py runs the same checks against a regular wheel install.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typing_support import (
    CheckResult,
    Diagnostic,
    mistake_programs,
    run_mypy,
    run_pyright,
    user_programs,
)


def assert_programs_pass(result: CheckResult, programs: list[Path], checker: str) -> None:
    assert result.files_checked == len(programs), f"{checker} did not check every program:\n{result.output}"
    assert not result.errors, f"{checker} reported errors in user programs:\n{result.output}"
    assert result.returncode == 0, result.output


def assert_mistakes_reported(result: CheckResult, expected: dict[int, str], checker: str) -> None:
    assert result.files_checked == 1, f"{checker} did not check the program:\n{result.output}"
    reported = {(e.line, e.rule) for e in result.errors}
    missing = {(line, rule) for line, rule in expected.items()} - reported
    assert not missing, f"{checker} did not report {sorted(missing)}:\n{result.output}"
    stray = [e for e in result.errors if e.line not in expected]
    assert not stray, f"{checker} reported errors on correct lines:\n{result.output}"
    assert result.returncode != 0


def check_user_programs(python: Path, workdir: Path) -> None:
    """Both checkers pass the user programs and report every deliberate mistake, run in ``workdir``."""
    programs = user_programs(workdir / "programs")
    assert len(programs) >= 9, [p.name for p in programs]
    mistakes = mistake_programs(workdir / "mistakes")
    assert {path.name for path, _ in mistakes} >= {"wrong_calls.py", "resource_mistakes.py"}
    assert all(expected for _, expected in mistakes) and sum(len(e) for _, e in mistakes) >= 15

    assert_programs_pass(run_mypy(python, programs, workdir / "programs"), programs, "mypy")
    assert_programs_pass(run_pyright(python, programs, workdir / "programs"), programs, "pyright")
    for program, expected in mistakes:
        mypy_rules = {line: rules[0] for line, rules in expected.items()}
        pyright_rules = {line: rules[1] for line, rules in expected.items()}
        assert_mistakes_reported(run_mypy(python, [program], program.parent), mypy_rules, "mypy")
        assert_mistakes_reported(run_pyright(python, [program], program.parent), pyright_rules, "pyright")


@pytest.mark.packaging
def test_editable_install_is_typed_for_users_outside_the_repository(tmp_path: Path) -> None:
    check_user_programs(Path(sys.executable), tmp_path)


def test_the_assertions_reject_stray_missing_and_absent_diagnostics(tmp_path: Path) -> None:
    """The assertions themselves: an error on a line without a MISTAKE marker is not tolerated."""
    program = tmp_path / "p.py"
    program.write_text("x = 1\ny = 2\n", encoding="utf-8")
    errors = (Diagnostic("p.py", 1, "misc"), Diagnostic("p.py", 2, "misc"))
    result = CheckResult(1, "p.py: two errors", errors, 1)
    with pytest.raises(AssertionError, match="reported errors in user programs"):
        assert_programs_pass(result, [program], "mypy")
    with pytest.raises(AssertionError, match="reported errors on correct lines"):
        assert_mistakes_reported(result, {2: "misc"}, "mypy")
    with pytest.raises(AssertionError, match=r"did not report \[\(2, 'other'\)\]"):
        assert_mistakes_reported(result, {1: "misc", 2: "other"}, "mypy")
    with pytest.raises(AssertionError, match="did not check every program"):
        assert_programs_pass(CheckResult(0, "crashed", (), None), [program], "pyright")
