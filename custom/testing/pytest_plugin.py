"""pytest fixtures for code that talks to Amperity: a fake tenant on a free 127.0.0.1 port.

Opt in from a ``conftest.py`` with ``pytest_plugins = ["amperity_async.testing.pytest_plugin"]`` (or
run ``pytest -p amperity_async.testing.pytest_plugin``); then any test can ask for ``fake_tenant``::

    def test_segments(fake_tenant):
        client = AmperityClient(tenant=fake_tenant.config.tenant, base_url=fake_tenant.base_url,
                                auth=ClientCredentials(fake_tenant.client_id, fake_tenant.client_secret))

The tenant runs on its own thread and event loop, so the fixture serves asyncio, trio and
synchronous tests alike. Override ``fake_tenant_config`` to change its data, limits or faults.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from amperity_async.testing import FakeTenantConfig, ThreadedFakeTenant


@pytest.fixture
def fake_tenant_config() -> FakeTenantConfig:
    """The settings of ``fake_tenant``: small collections, the real rate limits. Override to change."""
    from amperity_async.testing import FakeTenantConfig

    return FakeTenantConfig(rows=100, indexes=2, profiles_per_index=100)


@pytest.fixture
def fake_tenant(fake_tenant_config: FakeTenantConfig) -> Iterator[ThreadedFakeTenant]:
    """A running fake Amperity tenant (``.base_url``, ``.client_id``, ``.client_secret``, ``.stats``)."""
    from amperity_async.testing import start_in_thread

    with start_in_thread(fake_tenant_config) as tenant:
        yield tenant
