"""pytest fixtures for code that talks to Amperity: a fake tenant on a free 127.0.0.1 port.

Opt in from a ``conftest.py`` with ``pytest_plugins = ["amperity_async.testing.pytest_plugin"]`` (or
run ``pytest -p amperity_async.testing.pytest_plugin``); then any test can ask for ``fake_tenant``::

    def test_segments(fake_tenant):
        client = AmperityClient(tenant=fake_tenant.config.tenant, base_url=fake_tenant.base_url,
                                auth=ClientCredentials(fake_tenant.client_id, fake_tenant.client_secret))

The tenant runs on its own thread and event loop, so the fixture serves asyncio, trio and
synchronous tests alike. Mark a test to change its settings, or override ``fake_tenant_config``::

    @pytest.mark.fake_tenant(cursor_ignored={"list_segment"}, drip_rate={"get-workflow": 200})
    def test_a_list_that_ignores_its_cursor(fake_tenant): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from amperity_async.testing import FakeTenantConfig, ThreadedFakeTenant


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fake_tenant(**settings): FakeTenantConfig settings of the test's fake_tenant"
    )


@pytest.fixture
def fake_tenant_config(request: pytest.FixtureRequest) -> FakeTenantConfig:
    """The settings of ``fake_tenant``: small collections, the real rate limits, and those of the
    test's ``fake_tenant`` marks (the closest one wins). Override to change."""
    from amperity_async.testing import FakeTenantConfig

    settings: dict[str, Any] = {"rows": 100, "indexes": 2, "profiles_per_index": 100}
    for mark in reversed(list(request.node.iter_markers("fake_tenant"))):
        if mark.args:
            raise pytest.UsageError("@pytest.mark.fake_tenant takes settings by name, e.g. rows=10")
        settings.update(mark.kwargs)
    return FakeTenantConfig(**settings)


@pytest.fixture
def fake_tenant(fake_tenant_config: FakeTenantConfig) -> Iterator[ThreadedFakeTenant]:
    """A running fake Amperity tenant (``.base_url``, ``.client_id``, ``.client_secret``, ``.stats``)."""
    from amperity_async.testing import start_in_thread

    with start_in_thread(fake_tenant_config) as tenant:
        yield tenant
