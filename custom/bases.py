"""Where each API's requests go.

The generated functions' URLs carry their API's base path as the spec writes it (``/api/segments``,
``/prof/events/{stream-id}``), relative to the host. Each API has a configured base URL: the
client's ``base_url`` (``https://app.amperity.com/api``) for the APIs under ``/api``, and for another
API the same URL with its base path in place of ``/api`` (``https://app.amperity.com/prof`` for the
Real-time API) unless one is given. A base URL behind a proxy keeps working:
``https://gateway.example.com/amperity/api`` sends the Real-time API's requests to
``https://gateway.example.com/amperity/prof``.

``ApiBases.place`` moves a request from its spec URL to its API's configured URL; when the two are
the same (the usual case) the request is left untouched.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import httpx

from .errors import ConfigurationError
from .operations import CONTROL_PLANE, OperationRegistry
from .urls import checked_url


@attrs.frozen
class _Target:
    spec_base: bytes
    url: httpx.URL | None
    """None when the URL could not be derived (then ``problem`` says why)."""
    problem: str = ""


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


class ApiBases:
    """The configured base URL of each API, and the host root the spec URLs are resolved against."""

    def __init__(self, root: httpx.URL, targets: Mapping[str, _Target]) -> None:
        self.root = root
        self._root_origin = _origin(root)
        self._targets = dict(targets)
        # APIs whose configured URL is the spec URL itself: their requests are left as they are.
        self._in_place = {
            api
            for api, target in targets.items()
            if target.url is not None
            and _origin(target.url) == self._root_origin
            and target.url.raw_path.rstrip(b"/") == target.spec_base
        }

    @classmethod
    def configure(
        cls, registry: OperationRegistry, base_url: str, overrides: Mapping[str, str | None] | None = None
    ) -> ApiBases:
        """Base URLs from ``base_url`` (the control-plane API's) and ``overrides`` by API name.

        Raises ConfigurationError for an override that is not a usable URL.
        """
        base = httpx.URL(base_url)
        main = registry.apis.get(CONTROL_PLANE)
        main_base = main.base_path if main is not None else ""
        base_path = base.path.rstrip("/")
        targets: dict[str, _Target] = {}
        for api in registry.apis.values():
            setting = f"{api.name.replace('-', '_')}_base_url"
            given = (overrides or {}).get(api.name)
            spec_base = api.base_path.encode()
            if given is not None:
                targets[api.name] = _Target(spec_base, httpx.URL(checked_url(given, setting)))
            elif api.base_path == main_base:
                targets[api.name] = _Target(spec_base, base)
            elif base_path.endswith(main_base):
                path = base_path[: len(base_path) - len(main_base)] + api.base_path
                targets[api.name] = _Target(spec_base, base.copy_with(path=path))
            else:
                problem = (
                    f"the {api.name} API's base URL cannot be derived from base_url {str(base)!r}, "
                    f"whose path does not end with {main_base!r}: pass {setting}=..."
                )
                targets[api.name] = _Target(spec_base, None, problem)
        return cls(base.copy_with(raw_path=b"/"), targets)

    def url_of(self, api: str) -> str | None:
        """The configured base URL of ``api`` (None: it could not be derived)."""
        target = self._targets.get(api)
        return None if target is None or target.url is None else str(target.url).rstrip("/")

    def url_for(self, api: str | None, path: str) -> str:
        """The absolute URL of ``path`` (as the spec writes it, with its API's base path) at
        ``api``'s configured base URL: where ``place`` would move a request for it."""
        target = None if api is None or api in self._in_place else self._targets.get(api)
        if target is None:
            return str(self.root).rstrip("/") + path
        if target.url is None:
            raise ConfigurationError(target.problem)
        spec_base = target.spec_base.decode()
        rest = path[len(spec_base) :] if path.startswith(spec_base) else path
        return str(target.url).rstrip("/") + rest

    def place(self, request: httpx.Request, api: str | None) -> None:
        """Move ``request`` from its spec URL (on the root) to ``api``'s configured base URL, in place.

        A request to another host (an absolute URL given by hand) is left alone.
        """
        if api is None or api in self._in_place:
            return
        target = self._targets.get(api)
        url = request.url
        if target is None or _origin(url) != self._root_origin:
            return
        if target.url is None:
            raise ConfigurationError(target.problem)
        rest = (
            url.raw_path[len(target.spec_base) :]
            if url.raw_path.startswith(target.spec_base)
            else url.raw_path
        )
        request.url = url.copy_with(
            scheme=target.url.scheme,
            host=target.url.host,
            port=target.url.port,
            raw_path=target.url.raw_path.rstrip(b"/") + rest,
        )
        request.headers["Host"] = request.url.netloc.decode("ascii")
