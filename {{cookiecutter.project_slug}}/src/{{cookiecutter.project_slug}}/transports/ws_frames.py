"""The WebSocket protocol's frames: client frames parsed into models, server frames encoded.

Parsing decides the `error` code a malformed frame earns, so the connection can
answer it and live on: `bad_request` for anything that isn't a well-formed frame,
`unknown_type` for a string `type` this server doesn't speak.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from ..events import (
    DEFAULT_EVENT_NAME,
    IDEMPOTENCY_KEY_RULE,
    decode_json,
    is_valid_idempotency_key,
)
from ..permissions import INVALID_CHANNEL, INVALID_EVENT_NAME, is_valid_channel, is_valid_event_name
from ..validation import describe_validation_error

ErrorCode = Literal["bad_request", "unknown_type", "forbidden", "rate_limited", "unavailable"]

# Long enough to recognise what was sent, short enough to keep error frames small.
_ECHO_LIMIT = 64


class FrameError(Exception):
    """A client frame that can't be acted on; answered with an `error` frame."""

    def __init__(self, code: ErrorCode, detail: str, ref: str | None = None) -> None:
        super().__init__(detail)
        self.code: ErrorCode = code
        self.detail = detail
        self.ref = ref


def _check_channel(name: str) -> str:
    if not is_valid_channel(name):
        raise ValueError(INVALID_CHANNEL)
    return name


def _check_event_name(name: str) -> str:
    if not is_valid_event_name(name):
        raise ValueError(INVALID_EVENT_NAME)
    return name


def _check_idempotency_key(key: str) -> str:
    if not is_valid_idempotency_key(key):
        raise ValueError(IDEMPOTENCY_KEY_RULE)
    return key


Channel = Annotated[StrictStr, AfterValidator(_check_channel)]
IdempotencyKey = Annotated[StrictStr, AfterValidator(_check_idempotency_key)]
EventName = Annotated[StrictStr, AfterValidator(_check_event_name)]


class _ClientFrame(BaseModel):
    # Unknown fields are ignored so that clients can add fields without breaking.
    model_config = ConfigDict(extra="ignore", frozen=True)

    ref: StrictStr | None = None


class Subscribe(_ClientFrame):
    """`{"type":"subscribe","channel":C,"last_event_id":X?}`."""

    type: Literal["subscribe"]
    channel: Channel
    last_event_id: StrictStr | None = None


class Unsubscribe(_ClientFrame):
    """`{"type":"unsubscribe","channel":C}`."""

    type: Literal["unsubscribe"]
    channel: Channel


class Publish(_ClientFrame):
    """`{"type":"publish","channel":C,"event":E?,"data":D,"idempotency_key":K?}`.

    `data` may be null, not missing. A repeated `idempotency_key` publishes
    nothing and is answered with the first publish's id.
    """

    type: Literal["publish"]
    channel: Channel
    event: EventName = DEFAULT_EVENT_NAME
    data: Any = Field(...)
    idempotency_key: IdempotencyKey | None = None


class Pong(_ClientFrame):
    """`{"type":"pong"}`: the answer to a ping (any frame resets the idle timer)."""

    type: Literal["pong"]


class Refresh(_ClientFrame):
    """`{"type":"refresh","token":T}`: a new token for the same `sub`."""

    type: Literal["refresh"]
    token: StrictStr


AnyFrame = Subscribe | Unsubscribe | Publish | Pong | Refresh
_ADAPTER: TypeAdapter[AnyFrame] = TypeAdapter(Annotated[AnyFrame, Field(discriminator="type")])
# The `type` of each frame model: derived, so a new model is known at once.
KNOWN_TYPES = frozenset(
    get_args(model.model_fields["type"].annotation)[0] for model in get_args(AnyFrame)
)


def parse_frame(text: str) -> AnyFrame:
    """The frame `text` holds; raises `FrameError` with the code it deserves."""
    try:
        value = decode_json(text)
    except ValueError as exc:
        raise FrameError("bad_request", f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FrameError("bad_request", "a frame must be a JSON object")
    raw_ref = value.get("ref")
    ref = raw_ref if isinstance(raw_ref, str) else None
    if "type" not in value:
        raise FrameError("bad_request", "missing field 'type'", ref)
    kind = value["type"]
    if not isinstance(kind, str):
        raise FrameError("bad_request", "field 'type' must be a string", ref)
    if kind not in KNOWN_TYPES:
        raise FrameError("unknown_type", f"unknown frame type {_echo(kind)}", ref)
    try:
        return _ADAPTER.validate_python(value)
    except ValidationError as exc:
        # The discriminator adds the frame type to every location; drop it.
        raise FrameError("bad_request", describe_validation_error(exc, skip=1), ref) from None


def ref_of(text: str) -> str | None:
    """The `ref` of a frame that won't be parsed in full (a dropped one), if it has one."""
    try:
        value = decode_json(text)
    except ValueError:
        return None
    ref = value.get("ref") if isinstance(value, dict) else None
    return ref if isinstance(ref, str) else None


def _echo(value: str) -> str:
    shown = value if len(value) <= _ECHO_LIMIT else value[:_ECHO_LIMIT] + "..."
    return json.dumps(shown, ensure_ascii=False)


# -- server frames -------------------------------------------------------------

PING = '{"type":"ping"}'


def encode_frame(kind: str, ref: str | None = None, **fields: Any) -> str:
    """A server frame of type `kind`, carrying `ref` when the client gave one."""
    frame: dict[str, Any] = {"type": kind, **fields}
    if ref is not None:
        frame["ref"] = ref
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def error_frame(code: ErrorCode, detail: str, ref: str | None = None) -> str:
    """`{"type":"error","code":K,"detail":"...","ref":...}`."""
    return encode_frame("error", ref, code=code, detail=detail)
