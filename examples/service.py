"""A web service that personalizes pages from Amperity's Real-time API.

    GET  /personalize?email=...   the visitor's profile, looked up in real time
    POST /track                   a JSON event, sent to the event stream

One ``AmperityClient`` serves every request of the process: it is opened by the application's
lifespan and shared, so its connection pool, its access token and its rate budget are shared too.
A lookup has its own deadline, short enough for a page view: when Amperity is slow or failing the
page is answered without personalization instead of waiting. An event that cannot be sent is
reported to the caller (503), since the browser or job sending it may try again.

Run it with ``uvicorn --app-dir examples service:app`` and the usual ``AMPERITY_*`` variables
(``AMPERITY_TENANT``, ``AMPERITY_CLIENT_ID``, ``AMPERITY_CLIENT_SECRET``, and ``AMPERITY_BASE_URL``
for another region or a fake tenant); ``AMPERITY_PROFILE_COLLECTION`` and ``AMPERITY_EVENT_STREAM``
name the profile collection and the event stream.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from amperity_async import (
    AmperityClient,
    AmperityError,
    APITimeoutError,
    ClientCredentials,
    RequestTooLargeError,
)
from amperity_async.api.realtime import lookup_profile, send_event
from amperity_async.models import CollectionProfile, KeychainKeys, StreamEvent

logger = logging.getLogger("personalization")

COLLECTION = os.environ.get("AMPERITY_PROFILE_COLLECTION", "pc-customers")
STREAM = os.environ.get("AMPERITY_EVENT_STREAM", "es-web-events")
# A page view waits at most this long for its profile, retries included.
LOOKUP_DEADLINE = float(os.environ.get("PERSONALIZE_DEADLINE_SECONDS", "0.5"))


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    auth = ClientCredentials(os.environ["AMPERITY_CLIENT_ID"], os.environ["AMPERITY_CLIENT_SECRET"])
    async with AmperityClient(tenant=os.environ["AMPERITY_TENANT"], auth=auth) as amperity:
        yield {"amperity": amperity}


def greeting(profile: CollectionProfile | None) -> dict[str, Any]:
    if profile is None:
        return {"personalized": False, "greeting": "Welcome!"}
    attributes = profile.attributes.to_dict() if profile.attributes else {}
    name = attributes.get("given_name")
    return {
        "personalized": True,
        "profile_id": profile.profile_id,
        "greeting": f"Welcome back, {name}!" if name else "Welcome back!",
        "tier": attributes.get("loyalty_tier"),
    }


async def personalize(request: Request) -> JSONResponse:
    email = request.query_params.get("email", "").strip()
    if not email:
        return JSONResponse({"error": "the email query parameter is required"}, status_code=400)
    amperity: AmperityClient = request.state.amperity
    keys = KeychainKeys.from_dict({"email": email})
    try:
        # None when no profile matches: a first-time visitor, not an error.
        with amperity.within(LOOKUP_DEADLINE):
            profile = await amperity.find(lookup_profile, COLLECTION, keys=keys)
    except APITimeoutError:
        logger.warning("profile lookup took longer than %.2fs; answering without it", LOOKUP_DEADLINE)
        profile = None
    except AmperityError as exc:
        logger.warning("profile lookup failed (%s); answering without it", exc)
        profile = None
    return JSONResponse(greeting(profile))


async def track(request: Request) -> JSONResponse:
    try:
        event = await request.json()
    except ValueError:
        return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
    if not isinstance(event, dict):
        return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
    amperity: AmperityClient = request.state.amperity
    try:
        answer = await amperity.call(send_event, STREAM, body=StreamEvent.from_dict(event))
    except RequestTooLargeError as exc:
        return JSONResponse({"error": str(exc)}, status_code=413)
    except AmperityError as exc:
        # 503s were retried already (the event was not published); anything else is reported.
        logger.error("event not sent: %s", exc)
        return JSONResponse({"error": "the event could not be sent; try again"}, status_code=503)
    # 202: published; 204: the stream is set to drop events.
    return JSONResponse({"published": answer.status_code == 202}, status_code=202)


app = Starlette(
    routes=[Route("/personalize", personalize, methods=["GET"]), Route("/track", track, methods=["POST"])],
    lifespan=lifespan,
)
