"""Run mypy and pyright as a user would: strict, from a folder outside the repository, on programs
that import amperity_async from whichever environment ``python`` is (editable or wheel install)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import attrs

PROJECT = Path(__file__).resolve().parents[1]
TYPING = PROJECT / "tests" / "typing"
README = PROJECT / "README.md"
# The dev environment's checkers; the environment checked against is given per run.
TOOLS_BIN = Path(sys.executable).parent
# Above each mistake: # MISTAKE: what [mypy error-code] [pyright rule]
_MISTAKE = re.compile(r"#\s*MISTAKE:.*\[mypy (?P<mypy>[\w-]+)\]\s*\[pyright (?P<pyright>\w+)\]")
_MYPY_LINE = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+): error: .*\[(?P<code>[\w-]+)\]$", re.MULTILINE)
_MYPY_SUMMARY = re.compile(r"(?:no issues found in|checked) (?P<count>\d+) source files?")


@attrs.frozen
class Diagnostic:
    file: str
    line: int
    rule: str


@attrs.frozen
class CheckResult:
    returncode: int
    output: str
    errors: tuple[Diagnostic, ...]
    # How many source files the checker says it checked (None: it did not get that far).
    files_checked: int | None


def readme_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def user_programs(dest: Path) -> list[Path]:
    """The example programs of tests/typing and the README's examples, copied into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    programs = []
    for source in sorted(TYPING.glob("*.py")):
        programs.append(Path(shutil.copyfile(source, dest / source.name)))
    for index, example in enumerate(readme_examples()):
        path = dest / f"readme_example_{index}.py"
        path.write_text(example, encoding="utf-8")
        programs.append(path)
    return programs


def mistake_programs(dest: Path) -> list[tuple[Path, dict[int, tuple[str, str]]]]:
    """The programs of deliberate mistakes (tests/typing/mistakes), each copied into a folder of its
    own under ``dest`` (checked one at a time), with the (mypy, pyright) rule expected per line."""
    programs = []
    for source in sorted((TYPING / "mistakes").glob("*.py")):
        (dest / source.stem).mkdir(parents=True)
        path = Path(shutil.copyfile(source, dest / source.stem / source.name))
        expected = {}
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = _MISTAKE.search(text)
            if match:
                expected[number + 1] = (match["mypy"], match["pyright"])
        programs.append((path, expected))
    return programs


def run_mypy(python: Path, programs: list[Path], cwd: Path, *, timeout: float = 600) -> CheckResult:
    result = subprocess.run(
        [
            str(TOOLS_BIN / "mypy"),
            "--strict",
            "--python-executable",
            str(python),
            "--cache-dir",
            str(cwd / ".mypy_cache"),
            "--show-error-codes",
            *(p.name for p in programs),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    errors = tuple(
        Diagnostic(Path(m["file"]).name, int(m["line"]), m["code"]) for m in _MYPY_LINE.finditer(output)
    )
    summary = _MYPY_SUMMARY.search(output)
    return CheckResult(result.returncode, output, errors, int(summary["count"]) if summary else None)


def run_pyright(python: Path, programs: list[Path], cwd: Path, *, timeout: float = 600) -> CheckResult:
    (cwd / "pyrightconfig.json").write_text(
        json.dumps({"typeCheckingMode": "strict", "pythonVersion": "3.11"}), encoding="utf-8"
    )
    result = subprocess.run(
        [
            str(TOOLS_BIN / "pyright"),
            "--outputjson",
            "--pythonpath",
            str(python),
            *(p.name for p in programs),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    try:
        report = json.loads(result.stdout)
    except ValueError:
        return CheckResult(result.returncode, result.stdout + result.stderr, (), None)
    errors = tuple(
        Diagnostic(Path(d["file"]).name, int(d["range"]["start"]["line"]) + 1, str(d.get("rule", "")))
        for d in report.get("generalDiagnostics", [])
        if d.get("severity") == "error"
    )
    checked = report.get("summary", {}).get("filesAnalyzed")
    return CheckResult(result.returncode, result.stdout + result.stderr, errors, checked)
