"""Every Python example in README.md runs, as written, against the fake tenant."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from redis_server import RedisServer

from amperity_async.testing import FakeTenant, FakeTenantConfig

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the fake tenant is an aiohttp server


def test_the_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A Redis server for the examples that share a budget through one (AMPERITY_REDIS_URL)."""
    with RedisServer() as server:
        yield server.url


@pytest.mark.anyio
@pytest.mark.parametrize("index", range(len(EXAMPLES)))
async def test_readme_example_runs(index: int, tmp_path: Path, redis_url: str) -> None:
    config = FakeTenantConfig(rows=400, indexes=2, profiles_per_index=50, rate_limits=True)
    async with FakeTenant(config) as tenant:
        script = tmp_path / f"example_{index}.py"
        script.write_text(EXAMPLES[index], encoding="utf-8")
        env = {
            **os.environ,
            "AMPERITY_BASE_URL": tenant.base_url,
            "AMPERITY_CLIENT_ID": config.client_id,
            "AMPERITY_CLIENT_SECRET": config.client_secret,
            "AMPERITY_API_KEY_ID": config.api_key_id,
            "AMPERITY_ISSUER_TOKEN": config.issuer_token,
            "AMPERITY_REDIS_URL": redis_url,
        }
        with anyio.fail_after(120):
            result = await anyio.run_process(
                [sys.executable, str(script)], env=env, cwd=tmp_path, check=False
            )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output
    assert "Traceback" not in output
