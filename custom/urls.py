"""Which URLs the client sends credentials to: https, or plain http to a loopback host only, and
never with user info (``https://user:password@host``), which would end up in logs and reprs.

The API base URL and every token endpoint URL pass through ``checked_url``.
"""

from __future__ import annotations

import ipaddress

import httpx

from .errors import ConfigurationError


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def checked_url(url: str, what: str) -> str:
    """``url`` without a trailing slash, if the policy allows it; else a ``ConfigurationError``
    naming ``what`` (e.g. ``"base_url"``). The error never repeats user info."""
    if not isinstance(url, str):
        raise ConfigurationError(f"{what} must be a URL string, not {type(url).__name__}")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ConfigurationError(f"{what} is not a valid URL: {exc}") from None
    if parsed.userinfo:
        shown = parsed.copy_with(userinfo=b"")
        raise ConfigurationError(
            f"{what} must not carry user info (user name or password) in the URL: {shown}; pass "
            "credentials to the token source instead"
        )
    if parsed.scheme not in ("https", "http") or not parsed.host:
        raise ConfigurationError(f"{what} must be an https:// URL with a host, got {url!r}")
    if parsed.scheme == "http" and not is_loopback(parsed.host):
        raise ConfigurationError(
            f"{what} {url!r} is plain http: tokens would travel unencrypted, so it must use https; "
            "only loopback hosts (127.0.0.1, ::1, localhost) may use http://"
        )
    return url.rstrip("/")
