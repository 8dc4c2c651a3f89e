"""An embedded fake Amperity tenant, driven by the normalized spec (see ``FakeTenant``)."""

from .config import FakeTenantConfig
from .server import FakeTenant, ThreadedFakeTenant, run, serve_forever, start_in_thread

__all__ = ["FakeTenant", "FakeTenantConfig", "ThreadedFakeTenant", "run", "serve_forever", "start_in_thread"]
