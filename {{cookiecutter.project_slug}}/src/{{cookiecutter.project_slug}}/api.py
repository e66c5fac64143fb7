"""Plain HTTP routes: health, readiness, metrics and publishing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from .broadcast import BroadcasterUnavailable
from .events import (
    DEFAULT_EVENT_NAME,
    IDEMPOTENCY_KEY_RULE,
    decode_json,
    is_valid_idempotency_key,
)
from .metrics import CONTENT_TYPE_LATEST
from .openapi import json_request_body
from .permissions import INVALID_EVENT_NAME, is_valid_event_name
from .publisher import InvalidEvent, Publisher
from .service import ServiceDep, authenticate, check_channel, service_of
from .validation import describe_validation_error

router = APIRouter()


class PublishBody(BaseModel):
    """`{"event": name?, "data": any JSON}`; `data` may be null but not missing."""

    model_config = ConfigDict(extra="ignore")

    event: StrictStr = DEFAULT_EVENT_NAME
    data: Any = Field(...)


class Published(BaseModel):
    """The answer to an accepted publish."""

    id: str
    channel: str


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answers while the process serves requests; touches nothing."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(service: ServiceDep) -> dict[str, str] | JSONResponse:
    """Readiness: 200 while the broadcaster works, else 503."""
    if await service.broadcaster.is_ready():
        return {"status": "ready"}
    return JSONResponse(
        {"status": "unavailable", "detail": "broadcaster unreachable"}, status_code=503
    )


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus metrics of the whole process group (every `--workers` worker)."""
    return Response(await service.metrics_group.render(), media_type=CONTENT_TYPE_LATEST)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"body larger than {limit} bytes")
    return bytes(body)


# The route reads its body and header by hand, and FastAPI can't see them: they
# are declared for the OpenAPI document instead. By hand, the body is refused
# before it is buffered when it is too large, and a publish (the one request
# made for every event) skips FastAPI's dependency and parameter solving, a
# large part of its time.
PUBLISH_OPENAPI = {
    **json_request_body(
        PublishBody,
        {"event": "chat.message", "data": {"text": "hello"}},
        description="At most `MAX_MESSAGE_BYTES` bytes (413 beyond). `data` may be any JSON, "
        "`null` included, except NaN, Infinity, numbers beyond a double and lone surrogates.",
        fields={"event": {"pattern": "^[A-Za-z0-9_.:-]{1,64}$", "minLength": 1, "maxLength": 64}},
    ),
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Idempotency-Key"},
        }
    ],
}


@router.post(
    "/channels/{channel}/events",
    status_code=202,
    # Declared for the OpenAPI document; the route answers with a ready response,
    # which FastAPI sends as it is, without validating and serialising it again.
    response_model=Published,
    openapi_extra=PUBLISH_OPENAPI,
    responses={
        400: {"description": "Bad channel name, event name or Idempotency-Key"},
        401: {"description": "Missing, invalid or expired token"},
        403: {"description": "The token may not publish to this channel"},
        413: {"description": "Body larger than `MAX_MESSAGE_BYTES`"},
        422: {"description": "Malformed body, or data with no JSON form"},
        503: {
            "description": "Broadcaster unavailable: the event may or may not have been "
            "stored; retry with the same Idempotency-Key to publish it exactly once"
        },
    },
)
async def publish(channel: str, request: Request) -> JSONResponse:
    """Publish an event to `channel` (needs the `publish` permission).

    With an `Idempotency-Key` already used on this channel within `HISTORY_TTL`,
    nothing is published and the answer carries the first publish's id.
    """
    service = service_of(request)
    check_channel(channel)
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None and not is_valid_idempotency_key(idempotency_key):
        raise HTTPException(400, f"invalid Idempotency-Key: {IDEMPOTENCY_KEY_RULE}")
    principal = await authenticate(service, request)
    if not await service.authorizer.allows(principal, channel, "publish"):
        raise HTTPException(403, f"token may not publish to {channel!r}")
    raw = await _read_body(request, service.settings.max_message_bytes)
    try:
        body = PublishBody.model_validate(decode_json(raw))
    except ValidationError as exc:
        raise HTTPException(422, describe_validation_error(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, f"body is not valid JSON: {exc}") from None
    if not is_valid_event_name(body.event):
        raise HTTPException(400, INVALID_EVENT_NAME)
    try:
        event_id = await Publisher(service).publish(
            channel, body.data, event=body.event, idempotency_key=idempotency_key
        )
    except InvalidEvent as exc:
        raise HTTPException(422, str(exc)) from None
    except BroadcasterUnavailable as exc:
        raise HTTPException(503, f"broadcaster unavailable: {exc}") from None
    return JSONResponse({"id": event_id, "channel": channel}, status_code=202)
