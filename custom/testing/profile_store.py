"""The tenant's profile store: the Real-time API's profile collections, event streams and segments.

A profile collection holds unified profiles, each linked to keychain values (an email address, a
phone number, a loyalty ID: the link types of ``FakeTenantConfig.keychain``). An event stream feeds
one collection: a published event's keychain fields find the profile they are linked to, which
takes the event's other fields as attributes and links any new keychain value; when none is linked
yet, the event creates the profile. A lookup finds the one profile linked to every key it gives. A
real-time segment holds the profiles whose attribute has a given value, so membership follows the
events. Collections start with synthetic profiles made from the seed.

The store knows the data model of the Real-time API's documentation (profiles with
``collection_id``, ``profile_id``, ``attributes``, ``links`` and timestamps; pages of members and
memberships; statistics and history); which operation reaches which of its methods is the spec's
``x-amperity-profile-store`` marker, read by the app.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from .checks import RequestError
from .config import FakeTenantConfig

_GIVEN_NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goro", "Hana", "Ines", "Jon")
_TIERS = ("gold", "silver", "bronze")
_BUCKET_MS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
# Without `after`, history looks back this many buckets of the scale (the pages leave it open).
_DEFAULT_BUCKETS = {"minute": 60, "hour": 48, "day": 30}
MAX_HISTORY_BUCKETS = 1500


class StoreError(RequestError):
    """A request the store refuses; ``status`` and the message are the answer."""


PUBLISHED, DROPPED = "published", "dropped"


@attrs.define(eq=False)
class StoredProfile:
    profile_id: str
    attributes: dict[str, Any]
    links: dict[str, list[str]]
    created_ms: int
    updated_ms: int
    ticked_ms: int


def _timestamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class ProfileCollection:
    def __init__(self, collection_id: str, keychain: tuple[str, ...]) -> None:
        self.collection_id = collection_id
        self.keychain = keychain
        self.profiles: dict[str, StoredProfile] = {}
        self._linked: dict[tuple[str, str], str] = {}
        self._created: list[int] = []  # creation times, sorted, for the history

    def add(self, profile: StoredProfile) -> None:
        self.profiles[profile.profile_id] = profile
        bisect.insort(self._created, profile.created_ms)
        for link_type, values in profile.links.items():
            for value in values:
                self._linked[(link_type, value)] = profile.profile_id

    def link(self, profile: StoredProfile, link_type: str, value: str) -> None:
        values = profile.links.setdefault(link_type, [])
        if value not in values:
            values.append(value)
        self._linked[(link_type, value)] = profile.profile_id

    def find(self, keys: Mapping[str, str]) -> StoredProfile | None:
        """The one profile linked to every key (None when any key is unlinked or they disagree)."""
        found = {self._linked.get((link_type, value)) for link_type, value in keys.items()}
        if len(found) != 1 or None in found:
            return None
        (profile_id,) = found
        return None if profile_id is None else self.profiles[profile_id]

    def keychain_fields(self, event: Mapping[str, Any]) -> dict[str, str]:
        """The event's fields that are keychain values of this collection, in keychain order."""
        return {
            t: str(event[t]) for t in self.keychain if isinstance(event.get(t), str | int) and str(event[t])
        }

    def count_at(self, ms: int) -> int:
        """How many profiles existed at ``ms`` (created at or before it)."""
        return bisect.bisect_right(self._created, ms)

    def link_cardinality(self) -> dict[str, int]:
        counts = dict.fromkeys(self.keychain, 0)
        for link_type, _ in self._linked:
            counts[link_type] = counts.get(link_type, 0) + 1
        return counts


@attrs.frozen
class Segment:
    segment_id: str
    name: str
    attribute: str
    value: str

    def holds(self, profile: StoredProfile) -> bool:
        return str(profile.attributes.get(self.attribute)) == self.value


class ProfileStore:
    """Every collection, stream and segment of the fake tenant's Real-time API."""

    def __init__(self, config: FakeTenantConfig) -> None:
        self.config = config
        self.collections = {
            cid: ProfileCollection(cid, config.keychain) for cid in config.profile_collections
        }
        self.streams = dict(config.event_streams)
        self.segments = {
            sid: Segment(sid, sid.removeprefix("rts-").replace("-", " ").capitalize(), attribute, value)
            for sid, (attribute, value) in config.realtime_segments.items()
        }
        self.published = 0
        self.dropped = 0
        for collection in self.collections.values():
            self._populate(collection)

    def _populate(self, collection: ProfileCollection) -> None:
        c = self.config
        dice = random.Random(f"profiles:{c.seed}:{collection.collection_id}")
        start = int(c.time_start.timestamp() * 1000)
        span = int(c.time_end.timestamp() * 1000) - start
        for index in range(c.profiles_per_collection):
            created = start + dice.randrange(span)
            values = {
                "email": f"customer{index}@example.com",
                "phone": f"+1555{dice.randrange(10**7):07d}",
                "loyalty_id": f"LY{dice.randrange(10**8):08d}",
            }
            links = {t: [values.get(t, f"{t}-{index:06d}")] for t in collection.keychain}
            attributes: dict[str, Any] = {t: v[0] for t, v in links.items()}
            attributes |= {
                "given_name": dice.choice(_GIVEN_NAMES),
                "loyalty_tier": dice.choice(_TIERS),
                "lifetime_orders": dice.randrange(40),
            }
            updated = created + dice.randrange(max(1, start + span - created))
            profile_id = self._profile_id(collection.collection_id, f"seed:{index}")
            collection.add(StoredProfile(profile_id, attributes, links, created, updated, updated))

    def _profile_id(self, collection_id: str, origin: str) -> str:
        digest = hashlib.blake2b(f"{self.config.seed}:{collection_id}:{origin}".encode(), digest_size=6)
        return "p-" + digest.hexdigest()

    # -- lookups ----------------------------------------------------------------------------------

    def collection(self, collection_id: str) -> ProfileCollection:
        found = self.collections.get(collection_id)
        if found is None:
            raise StoreError(f"no profile collection {collection_id!r} in this tenant", 404)
        return found

    def profile(self, collection_id: str, profile_id: str) -> StoredProfile:
        found = self.collection(collection_id).profiles.get(profile_id)
        if found is None:
            raise StoreError(f"no profile {profile_id!r} in the profile collection {collection_id!r}", 404)
        return found

    def lookup(self, collection_id: str, keys: Mapping[str, str]) -> StoredProfile:
        if not keys:
            raise StoreError("at least one keychain key is required (such as email=...)", 400)
        found = self.collection(collection_id).find(keys)
        if found is None:
            raise StoreError(f"no profile of the collection {collection_id!r} matches the keys", 404)
        return found

    def render(self, collection_id: str, profile: StoredProfile, *, enrich: bool) -> dict[str, Any]:
        attributes = dict(profile.attributes)
        if enrich:
            # What enrichment adds, derived so that a test can tell an enriched answer apart.
            attributes["predicted_clv"] = round(float(attributes.get("lifetime_orders", 0) or 0) * 37.5, 2)
        return {
            "collection_id": collection_id,
            "profile_id": profile.profile_id,
            "attributes": attributes,
            "created_at": _timestamp(profile.created_ms),
            "updated_at": _timestamp(profile.updated_ms),
            "ticked_at": _timestamp(profile.ticked_ms),
            "links": {t: list(v) for t, v in profile.links.items()},
        }

    # -- events -----------------------------------------------------------------------------------

    def check_stream(self, stream_id: str) -> ProfileCollection:
        collection_id = self.streams.get(stream_id)
        if collection_id is None:
            raise StoreError(f"no event stream {stream_id!r} in this tenant", 404)
        return self.collections[collection_id]

    def publish(self, stream_id: str, event: Mapping[str, Any], now_ms: int) -> str:
        """Publish an event (PUBLISHED), or drop it as the stream is set to (DROPPED)."""
        collection = self.check_stream(stream_id)
        if stream_id in self.config.paused_streams:
            raise StoreError(f"the event stream {stream_id!r} is not accepting events", 409)
        if stream_id in self.config.dropping_streams:
            self.dropped += 1
            return DROPPED
        self.published += 1
        keys = collection.keychain_fields(event)
        if not keys:
            return PUBLISHED  # published, but linked to no profile
        profile = next(
            (p for p in (collection.find({t: v}) for t, v in keys.items()) if p is not None),
            None,
        )
        if profile is None:
            first = next(iter(keys.items()))
            profile = StoredProfile(
                self._profile_id(collection.collection_id, f"{first[0]}={first[1]}"),
                {},
                {},
                now_ms,
                now_ms,
                now_ms,
            )
            collection.add(profile)
        for link_type, value in keys.items():
            collection.link(profile, link_type, value)
        profile.attributes.update(event)
        profile.updated_ms = profile.ticked_ms = now_ms
        return PUBLISHED

    # -- segments, statistics, history -------------------------------------------------------------

    def segment(self, segment_id: str) -> Segment:
        found = self.segments.get(segment_id)
        if found is None:
            raise StoreError(f"no real-time segment {segment_id!r} in this tenant", 404)
        return found

    def members(self, segment_id: str) -> list[str]:
        """Profile IDs of a segment's members, across every collection, oldest profile first."""
        segment = self.segment(segment_id)
        return [
            profile.profile_id
            for collection in self.collections.values()
            for profile in collection.profiles.values()
            if segment.holds(profile)
        ]

    def memberships(self, collection_id: str, profile_id: str) -> list[dict[str, str]]:
        profile = self.profile(collection_id, profile_id)
        return [
            {"segment_id": s.segment_id, "segment_name": s.name}
            for s in self.segments.values()
            if s.holds(profile)
        ]

    def stats(self, collection_id: str) -> dict[str, Any]:
        collection = self.collection(collection_id)
        return {"total_profiles": len(collection.profiles), "link_cardinality": collection.link_cardinality()}

    def history(
        self, collection_id: str, scale: str, after_ms: int | None, before_ms: int | None, now_ms: int
    ) -> dict[str, Any]:
        """Profile counts per bucket of ``scale`` from ``after`` to ``before``, both inclusive."""
        collection = self.collection(collection_id)
        size = _BUCKET_MS[scale]
        before = now_ms if before_ms is None else before_ms
        after = before - _DEFAULT_BUCKETS[scale] * size if after_ms is None else after_ms
        if after >= before:
            raise StoreError("after must be earlier than before", 400)
        first = after - after % size
        buckets = (before - first) // size + 1
        if buckets > MAX_HISTORY_BUCKETS:
            raise StoreError(
                f"the window holds {buckets} buckets of a {scale}; at most {MAX_HISTORY_BUCKETS} "
                f"are answered",
                400,
            )
        data = [
            {"bucket": _timestamp(start), "count": collection.count_at(start + size - 1)}
            for start in range(first, before + 1, size)
        ]
        return {"scale": scale, "data": data}
