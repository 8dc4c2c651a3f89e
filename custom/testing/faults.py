"""Injected faults: random ones drawn from a seeded source so a run can be repeated, and the
per-operation hostile behaviours the config chooses."""

from __future__ import annotations

import random

from amperity_async.custom.errors import ConfigurationError

from .config import FakeTenantConfig
from .pages import CURSOR_IGNORED, ENDLESS_EMPTY_PAGES, REPEATED_ITEMS, ListFaults
from .selection import Kind, OperationNames
from .spec import LIST, TenantSpec
from .wire import Delivery

DROP, ERROR_500, ERROR_503 = "drop", 500, 503


class FaultInjector:
    def __init__(self, config: FakeTenantConfig) -> None:
        self._config = config
        self._dice = random.Random(f"faults:{config.seed}")
        self._started_at = config.clock()
        self._revoked_by_count = False
        self._revoked_by_time = False

    @property
    def active(self) -> bool:
        c = self._config
        return bool(c.error_rate or c.drop_rate or c.latency or c.latency_jitter)

    def outcome(self) -> str | int | None:
        """What happens to the next API request instead of an answer: a drop, a 5xx, or nothing."""
        c = self._config
        roll = self._dice.random()
        if roll < c.drop_rate:
            return DROP
        if roll < c.drop_rate + c.error_rate:
            return ERROR_500 if self._dice.random() < 0.5 else ERROR_503
        return None

    def delay(self) -> float:
        c = self._config
        return c.latency + (self._dice.random() * c.latency_jitter if c.latency_jitter else 0.0)

    def should_revoke(self, requests_so_far: int) -> bool:
        """Whether the scheduled revocation falls due now (each schedule fires once)."""
        c = self._config
        due = False
        if (
            c.revoke_after_requests is not None
            and not self._revoked_by_count
            and requests_so_far >= c.revoke_after_requests
        ):
            self._revoked_by_count = due = True
        if (
            c.revoke_after_seconds is not None
            and not self._revoked_by_time
            and c.clock() - self._started_at >= c.revoke_after_seconds
        ):
            self._revoked_by_time = due = True
        return due


OAUTH_TOKEN, ISSUER_TOKEN = "oauth-token", "issuer-token"
TOKEN_ENDPOINTS = (OAUTH_TOKEN, ISSUER_TOKEN)
"""How per-operation wire settings name the two token endpoints, which are not in the spec."""


FOLLOWABLE_LIST = Kind(lambda op: op.role == LIST and op.cursor_usable, "a list whose cursor can be followed")
LIST_OPERATION = Kind(lambda op: op.role == LIST, "a list operation")
JSON_ANSWER = Kind(lambda op: op.response_schema is not None, "an operation that answers a JSON body")


class FaultPlan:
    """The per-operation settings of a config, checked against the served spec and keyed by operation id."""

    def __init__(self, config: FakeTenantConfig, spec: TenantSpec) -> None:
        names = OperationNames(spec.operations)
        self.rows = names.select_values("rows_by_operation", config.rows_by_operation, LIST_OPERATION)
        cursor_faults = {
            "cursor_ignored": (config.cursor_ignored, CURSOR_IGNORED),
            "endless_empty_pages": (config.endless_empty_pages, ENDLESS_EMPTY_PAGES),
            "repeated_items": (config.repeated_items, REPEATED_ITEMS),
        }
        self._cursor: dict[str, str] = {}
        chosen_by: dict[str, str] = {}
        for setting, (ops, mode) in cursor_faults.items():
            for op_id in names.select(setting, ops, FOLLOWABLE_LIST):
                if op_id in self._cursor:
                    raise ConfigurationError(
                        f"{op_id} is chosen by both {chosen_by[op_id]} and {setting}; a list's cursor "
                        f"can misbehave in one way at a time"
                    )
                self._cursor[op_id], chosen_by[op_id] = mode, setting
        self._null_next_token = names.select("null_next_token", config.null_next_token, FOLLOWABLE_LIST)
        self.null_optional_fields = names.select(
            "null_optional_fields", config.null_optional_fields, JSON_ANSWER
        )
        # Wire settings reach the token endpoints too, by name.
        tokens = TOKEN_ENDPOINTS
        self._drip = names.select_values("drip_rate", config.drip_rate, endpoints=tokens)
        self._cut = names.select_values("close_after_bytes", config.close_after_bytes, endpoints=tokens)
        self._endless = names.select("endless_body", config.endless_body, endpoints=tokens)
        self._bad_gzip = names.select("bad_gzip", config.bad_gzip, endpoints=tokens)
        self.invalid_utf8_errors = names.select(
            "invalid_utf8_errors", config.invalid_utf8_errors, endpoints=tokens
        )
        self._pace_head = config.drip_headers
        # How many requests of each operation are still answered with its scripted failure.
        self._scripted = {
            op_id: list(pair) for op_id, pair in names.select_values("fail_first", config.fail_first).items()
        }

    def scripted_failure(self, op_id: str) -> int | None:
        """The status this request of ``op_id`` gets instead of being carried out (fail_first), if any."""
        remaining = self._scripted.get(op_id)
        if not remaining or remaining[1] <= 0:
            return None
        remaining[1] -= 1
        return int(remaining[0])

    def list_faults(self, op_id: str) -> ListFaults:
        return ListFaults(cursor=self._cursor.get(op_id), null_next_token=op_id in self._null_next_token)

    def hands_out_new_cursors(self, op_id: str) -> bool:
        """Whether the operation's pages differ request by request (so none may be cached)."""
        return op_id in self._cursor

    def delivery(self, op_id: str) -> Delivery:
        return Delivery(
            rate=self._drip.get(op_id),
            pace_head=self._pace_head,
            cut_after=self._cut.get(op_id),
            endless=op_id in self._endless,
            bad_gzip=op_id in self._bad_gzip,
        )
