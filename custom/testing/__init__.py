"""Testing support, installed as ``amperity_async.testing`` (extra ``amperity-async[testing]``).

An embedded fake Amperity tenant driven by the normalized spec (``FakeTenant``, or
``start_in_thread`` for trio and synchronous callers), and pytest fixtures that start one, which
a test suite opts into with ``pytest_plugins = ["amperity_async.testing.pytest_plugin"]`` in its
``conftest.py`` (or ``pytest -p amperity_async.testing.pytest_plugin``).
"""

from .config import FakeTenantConfig
from .server import FakeTenant, ThreadedFakeTenant, run, serve_forever, start_in_thread

__all__ = ["FakeTenant", "FakeTenantConfig", "ThreadedFakeTenant", "run", "serve_forever", "start_in_thread"]
