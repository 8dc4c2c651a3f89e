"""The package as users get it: built from a clean clone, installed into fresh virtualenvs.

``python -m build`` makes the sdist from a clone and the wheel from that sdist (so the sdist must
carry everything the build needs); the wheel is installed without any extra, then with
``[testing]``; ``pip install .`` is tried on another clone without make. Slow (each step installs
from the package index): marked ``packaging``.
"""

from __future__ import annotations

import ast
import json
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import attrs
import pytest
from packaging.requirements import Requirement
from packaging_support import PROJECT, Venv, build_env, clean_clone, fresh_venv, run, succeed
from test_typing_outside import check_user_programs
from typing_support import readme_examples

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(1200)]

PYPROJECT = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = PYPROJECT["project"]["version"]
# Distributions (normalized names) and top-level modules that only the extras or the tooling need.
NOT_RUNTIME_DISTRIBUTIONS = {
    "orjson",
    "pyyaml",
    "python-jsonpath",
    "redis",
    "openapi-python-client",
    "ruff",
    "pytest",
    "python-dateutil",
}
NOT_RUNTIME_MODULES = (
    "yaml",
    "jsonpath",
    "orjson",
    "redis",
    "openapi_python_client",
    "dateutil",
    "pytest",
    "tools",
)


@attrs.frozen
class Dists:
    sdist: Path
    wheel: Path


@attrs.frozen
class InstalledWheel:
    venv: Venv
    # What the plain install (no extra) put into the virtualenv.
    distributions: frozenset[str]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("packaging")


@pytest.fixture(scope="module")
def dists(workdir: Path) -> Dists:
    clone = clean_clone(workdir / "clone")
    out = workdir / "dist"
    # python -m build: the sdist from the clone, then the wheel from the unpacked sdist.
    succeed([sys.executable, "-m", "build", "--outdir", str(out), str(clone)], cwd=workdir, env=build_env())
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dists(sdist, wheel)


@pytest.fixture(scope="module")
def installed_wheel(workdir: Path, dists: Dists) -> InstalledWheel:
    venv = fresh_venv(workdir / "venv-wheel")
    venv.pip_install(str(dists.wheel), cwd=workdir)
    return InstalledWheel(venv, frozenset(venv.distributions()))


def test_the_sdist_carries_what_a_wheel_build_needs_and_nothing_built(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    lock = json.loads((PROJECT / "openapi" / "sources.lock.json").read_text(encoding="utf-8"))
    needed = {
        "pyproject.toml",
        "setup.py",
        "LICENSE",
        "README.md",
        "generator-config.yaml",
        "openapi/sources.lock.json",
        "tools/build_backend.py",
        "tools/editable_wheel.py",
        "tools/specs/build.py",
        "tools/specs/generate.py",
        "custom/client.py",
        "custom/testing/app.py",
    }
    needed |= {f"openapi/{overlay}" for doc in lock["documents"] for overlay in doc["overlays"]}
    # Hand-written documents (the Real-time API's) are sources, read in place.
    needed |= {f"openapi/{doc['local']}" for doc in lock["documents"] if "local" in doc}
    needed |= {f"openapi/templates/{p.name}" for p in (PROJECT / "openapi" / "templates").glob("*.jinja")}
    assert needed <= names, sorted(needed - names)
    built = [
        name
        for name in names
        if name.startswith(("amperity_async/", "openapi/upstream", "build/"))
        or name == "openapi/amperity.json"
        or any(name.endswith(doc["file"]) for doc in lock["documents"] if "local" not in doc)
    ]
    assert built == []


def test_the_wheel_holds_the_client_and_fake_tenant_but_no_tooling(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = set(wheel.namelist())
        metadata = Parser().parsestr(wheel.read(f"amperity_async-{VERSION}.dist-info/METADATA").decode())
        entry_points = wheel.read(f"amperity_async-{VERSION}.dist-info/entry_points.txt").decode()
    for name in (
        "amperity_async/__init__.py",
        "amperity_async/_operations.py",
        "amperity_async/openapi.json",
        "amperity_async/py.typed",
        "amperity_async/api/segments/list_segment.py",
        "amperity_async/custom/client.py",
        "amperity_async/testing/pytest_plugin.py",
        f"amperity_async-{VERSION}.dist-info/licenses/LICENSE",
    ):
        assert name in names
    assert not [n for n in names if n.startswith(("tools/", "custom/", "amperity_async/custom/testing/"))]
    assert not [n for n in names if "/specs/" in n or n.endswith(".generated-from")]

    requires = metadata.get_all("Requires-Dist") or []
    unconditional = {str(Requirement(r)) for r in requires if "extra ==" not in r}
    assert unconditional == {str(Requirement(r)) for r in PYPROJECT["project"]["dependencies"]}
    assert {"redis", "testing", "dev"} <= set(metadata.get_all("Provides-Extra") or [])
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "Typing :: Typed" in (metadata.get_all("Classifier") or [])
    assert "amperity-async = amperity_async.custom.cli:main" in entry_points


def test_the_wheel_installs_without_dev_dependencies_and_imports_only_the_client(
    installed_wheel: InstalledWheel, workdir: Path
) -> None:
    assert "amperity-async" in installed_wheel.distributions
    assert not installed_wheel.distributions & NOT_RUNTIME_DISTRIBUTIONS
    report = installed_wheel.venv.python_output(
        "import json, sys, amperity_async\n"
        "from amperity_async.api.segments import list_segment\n"
        "print(json.dumps({'version': amperity_async.__version__, 'file': amperity_async.__file__,\n"
        "                  'modules': sorted(sys.modules)}))",
        cwd=workdir,
    )
    loaded = json.loads(report)
    assert loaded["version"] == VERSION
    assert str(installed_wheel.venv.root) in loaded["file"]
    heavy = [
        m
        for m in loaded["modules"]
        if m.split(".")[0] in NOT_RUNTIME_MODULES or m.startswith(("aiohttp.web", "amperity_async.testing"))
    ]
    assert heavy == []
    # The extras' names say what to install instead of failing on a missing module.
    missing_extra = run(
        [str(installed_wheel.venv.python), "-c", "from amperity_async import RedisTokenBucket"], cwd=workdir
    )
    assert missing_extra.returncode != 0
    assert "pip install 'amperity-async[redis]'" in missing_extra.stderr


def test_a_readme_example_runs_against_the_fake_tenant_from_the_testing_extra(
    installed_wheel: InstalledWheel, dists: Dists, workdir: Path
) -> None:
    venv = installed_wheel.venv
    venv.pip_install(f"{dists.wheel}[testing]", cwd=workdir)
    example = workdir / "readme_example.py"
    example.write_text(readme_examples()[0], encoding="utf-8")
    runner = workdir / "run_example.py"
    runner.write_text(
        "import os, runpy, sys\n"
        "from amperity_async.testing import start_in_thread\n"
        "with start_in_thread(rows=60) as tenant:\n"
        "    os.environ['AMPERITY_BASE_URL'] = tenant.base_url\n"
        "    os.environ['AMPERITY_CLIENT_ID'] = tenant.client_id\n"
        "    os.environ['AMPERITY_CLIENT_SECRET'] = tenant.client_secret\n"
        "    runpy.run_path(sys.argv[1], run_name='__main__')\n",
        encoding="utf-8",
    )
    output = succeed([str(venv.python), str(runner), str(example)], cwd=workdir, timeout=180)
    # The example prints the names of the first five segments the tenant serves.
    names = ast.literal_eval(output.strip())
    assert len(names) == 5 and all(isinstance(name, str) and name for name in names)


def test_an_unrelated_pytest_project_passes_and_the_plugin_is_opt_in(
    installed_wheel: InstalledWheel, dists: Dists, workdir: Path
) -> None:
    venv = installed_wheel.venv
    venv.pip_install(f"{dists.wheel}[testing]", "pytest", cwd=workdir)
    unrelated = workdir / "unrelated"
    unrelated.mkdir()
    (unrelated / "test_arithmetic.py").write_text("def test_sum():\n    assert sum([1, 2]) == 3\n")
    result = succeed([str(venv.python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=unrelated)
    assert "1 passed" in result
    assert "fake_tenant" not in succeed(
        [str(venv.python), "-m", "pytest", "--fixtures", "-p", "no:cacheprovider"], cwd=unrelated
    )

    opted_in = workdir / "opted-in"
    opted_in.mkdir()
    (opted_in / "conftest.py").write_text('pytest_plugins = ["amperity_async.testing.pytest_plugin"]\n')
    (opted_in / "test_with_tenant.py").write_text(
        "import anyio\n"
        "from amperity_async import AmperityClient, ClientCredentials\n"
        "from amperity_async.api.segments import list_segment\n\n"
        "def test_segments(fake_tenant):\n"
        "    async def main():\n"
        "        auth = ClientCredentials(fake_tenant.client_id, fake_tenant.client_secret)\n"
        "        async with AmperityClient(tenant=fake_tenant.config.tenant, base_url=fake_tenant.base_url,\n"
        "                                  auth=auth) as client:\n"
        "            return await client.call(list_segment, limit=3)\n"
        "    assert len(anyio.run(main).data) == 3\n"
    )
    result = succeed([str(venv.python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=opted_in)
    assert "1 passed" in result


def test_the_regular_install_is_typed_for_users_outside_the_repository(dists: Dists, workdir: Path) -> None:
    # With the extras the README's examples use (RedisTokenBucket's signature names redis's client;
    # one example runs an extraction on Dask) and respx, which the mocking example tests with.
    venv = fresh_venv(workdir / "venv-typed")
    venv.pip_install(f"{dists.wheel}[redis,dask]", "respx>=0.22", cwd=workdir)
    check_user_programs(venv.python, workdir / "typing")


def test_pip_install_dot_from_a_clean_clone_without_make(workdir: Path) -> None:
    clone = clean_clone(workdir / "clone-pip")
    venv = fresh_venv(workdir / "venv-pip")
    venv.pip_install(str(clone), cwd=workdir, env=build_env())
    report = venv.python_output(
        "import amperity_async\n"
        "from amperity_async.api.workflow import get_workflow\n"
        "from amperity_async.models import GetWorkflowView\n"
        "print(amperity_async.__version__, amperity_async.AmperityClient.__name__, GetWorkflowView.VERBOSE)",
        cwd=workdir,
    )
    assert report.split() == [VERSION, "AmperityClient", "verbose"]
    assert "usage: amperity-async" in succeed([str(venv.script("amperity-async")), "--help"], cwd=workdir)


def test_a_build_without_the_documents_stops_with_one_clear_message(workdir: Path) -> None:
    clone = clean_clone(workdir / "clone-no-documents")
    empty_mirror = workdir / "empty-mirror"
    empty_mirror.mkdir()
    # The dev environment has the build requirements; no isolation keeps this check quick.
    result = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "-w",
            str(workdir / "x"),
            ".",
        ],
        cwd=clone,
        env=build_env(AMPERITY_SPEC_MIRROR=str(empty_mirror)),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    first = json.loads((PROJECT / "openapi" / "sources.lock.json").read_text(encoding="utf-8"))["documents"][
        0
    ]
    assert f"amperity-async build: cannot read {empty_mirror / first['file']}" in output
    assert "set AMPERITY_SPEC_MIRROR to a folder or URL base" in output
    assert "Traceback" not in output
    assert not (clone / "amperity_async").exists()
