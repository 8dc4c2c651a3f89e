"""Secret values and their removal from every text the library lets out.

A ``Secret`` never shows its value in ``repr`` or ``str``. A ``Redactor`` knows the secrets of its
owner (a client, a token source) and the recent access tokens, and ``scrub`` replaces each of
them in a text, in every form a server may echo it back: raw, URL-encoded (``quote`` and
``quote_plus``, hex digits in either case), JSON-escaped and base64 (standard and URL-safe, at any
alignment inside a longer base64 text). ``RedactedLog`` is a logger whose lines pass through a
redactor. There is no global registry: each client owns one redactor, which includes those of its
token source.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import traceback
import urllib.parse
from collections import deque
from collections.abc import Iterator

REDACTED = "**********"
# Shorter values are not scrubbed: replacing every occurrence of "ab" would destroy the text and
# hide nothing worth hiding.
MIN_SCRUBBED_LENGTH = 4
# A base64 core shorter than this would also match unrelated text.
_MIN_BASE64_CORE = 8
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


class Secret:
    """A string that never shows itself: ``repr`` and ``str`` print asterisks.

    ``get_secret_value()`` returns the string; two secrets are equal when their strings are.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{REDACTED}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def as_secret(value: str | Secret) -> Secret:
    return value if isinstance(value, Secret) else Secret(value)


def _base64_cores(raw: bytes) -> Iterator[str]:
    """The base64 characters that encode only ``raw``'s bytes, for each alignment ``raw`` may have
    inside a longer encoded text (its offset modulo 3), in the standard and URL-safe alphabets."""
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        # Character i carries bits 6i..6i+5; keep those that lie within raw's bits.
        first = -(-8 * offset // 6)
        last = (8 * (offset + len(raw))) // 6
        core = encoded[first:last]
        if len(core) >= _MIN_BASE64_CORE:
            yield core
            yield core.replace("+", "-").replace("/", "_")


def _forms(value: str) -> set[str]:
    """Every form in which ``value`` may come back inside a text."""
    forms = {
        value,
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value),
        urllib.parse.quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    forms.update(_base64_cores(value.encode("utf-8")))
    return forms


def _pattern_of(form: str) -> str:
    # Percent escapes match in either case: servers and proxies re-encode as they like.
    pieces: list[str] = []
    position = 0
    for escape in _PERCENT_ESCAPE.finditer(form):
        pieces.append(re.escape(form[position : escape.start()]))
        pieces.append("%(?i:" + escape.group()[1:] + ")")
        position = escape.end()
    pieces.append(re.escape(form[position:]))
    return "".join(pieces)


class Redactor:
    """Scrubs the secrets it knows from texts.

    - ``add(secret)``: a value to hide for the redactor's whole life (client secret, issuer token);
    - ``add_token(token)``: an access token; the ``keep_tokens`` most recent ones are hidden (the
      current one, and the previous ones that requests still in flight may carry);
    - ``include(other)``: ``other``'s secrets are hidden too (a client includes its token source's).
    """

    def __init__(self, *secrets: Secret | str, keep_tokens: int = 8) -> None:
        if keep_tokens < 1:
            raise ValueError(f"keep_tokens must be at least 1, got {keep_tokens!r}")
        self._secrets: set[str] = set()
        self._tokens: deque[str] = deque(maxlen=keep_tokens)
        self._included: list[Redactor] = []
        self._version = 0
        self._compiled_for: tuple[int, ...] | None = None
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: Secret | str) -> None:
        value = secret.get_secret_value() if isinstance(secret, Secret) else secret
        if len(value) >= MIN_SCRUBBED_LENGTH and value not in self._secrets:
            self._secrets.add(value)
            self._version += 1

    def add_token(self, token: Secret | str) -> None:
        value = token.get_secret_value() if isinstance(token, Secret) else token
        if len(value) >= MIN_SCRUBBED_LENGTH and value not in self._tokens:
            self._tokens.append(value)
            self._version += 1

    def include(self, other: Redactor) -> None:
        if other is not self and other not in self._included:
            self._included.append(other)
            self._version += 1

    def _values(self, seen: set[int]) -> Iterator[str]:
        if id(self) in seen:
            return
        seen.add(id(self))
        yield from self._secrets
        yield from self._tokens
        for other in self._included:
            yield from other._values(seen)

    def _versions(self, seen: set[int]) -> Iterator[int]:
        if id(self) in seen:
            return
        seen.add(id(self))
        yield self._version
        for other in self._included:
            yield from other._versions(seen)

    def _current_pattern(self) -> re.Pattern[str] | None:
        versions = tuple(self._versions(set()))
        if versions != self._compiled_for:
            forms: set[str] = set()
            for value in self._values(set()):
                forms.update(_forms(value))
            # Longest first, so that a form is never left half-replaced by a shorter one it contains.
            ordered = sorted(forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(_pattern_of, ordered))) if ordered else None
            self._compiled_for = versions
        return self._pattern

    def scrub(self, text: str) -> str:
        """``text`` with every known secret, in every form, replaced by asterisks."""
        pattern = self._current_pattern()
        return text if pattern is None or not text else pattern.sub(REDACTED, text)

    def leaks(self, text: str) -> bool:
        """Whether ``text`` holds a known secret in any form."""
        pattern = self._current_pattern()
        return pattern is not None and pattern.search(text) is not None

    def scrub_error(self, error: BaseException) -> None:
        """Scrub, in place, every text ``error`` carries: its message (``args``) and its string
        attributes (``message``, ``body``, ``detail``, ...)."""
        error.args = tuple(self.scrub(arg) if isinstance(arg, str) else arg for arg in error.args)
        for name, value in vars(error).items():
            if isinstance(value, str):
                setattr(error, name, self.scrub(value))

    def safe_cause(self, exc: BaseException) -> BaseException | None:
        """``exc`` if its whole chain prints without a secret, else ``None``: what to chain a typed
        error to (``raise error from redactor.safe_cause(exc)``) so tracebacks stay clean."""
        text = "".join(traceback.format_exception(exc))
        return None if self.leaks(text) else exc

    def __repr__(self) -> str:
        count = sum(1 for _ in self._values(set()))
        return f"Redactor({count} secret values)"


class RedactedLog:
    """A logger whose messages are formatted, then scrubbed, before they become log records."""

    def __init__(self, logger: logging.Logger, redactor: Redactor) -> None:
        self.logger, self.redactor = logger, redactor

    def log(self, level: int, message: str, *args: object) -> None:
        if self.logger.isEnabledFor(level):
            text = message % args if args else message
            # stacklevel points the record at the caller of debug()/info()/..., not at this class.
            self.logger.log(level, "%s", self.redactor.scrub(text), stacklevel=3)

    def debug(self, message: str, *args: object) -> None:
        self.log(logging.DEBUG, message, *args)

    def info(self, message: str, *args: object) -> None:
        self.log(logging.INFO, message, *args)

    def warning(self, message: str, *args: object) -> None:
        self.log(logging.WARNING, message, *args)
