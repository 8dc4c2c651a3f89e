import pytest

pytest_plugins = ["amperity_async.testing.pytest_plugin"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Backend-neutral code runs on both; tests that need asyncio (aiohttp) override this."""
    return str(request.param)
