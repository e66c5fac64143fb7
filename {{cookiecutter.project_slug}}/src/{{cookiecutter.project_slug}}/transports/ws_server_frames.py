"""The frames the server sends, as models: the protocol's other half, for documents and tests.

The server writes its frames with `ws_frames.encode_frame` (and `Event.ws_text`
for messages), which is faster than building models; these models describe the
same frames, and the tests check every frame a real connection sends against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .ws_frames import ErrorCode


class _ServerFrame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Reply(_ServerFrame):
    ref: str | None = Field(
        default=None, description="The `ref` of the client frame this answers, when it had one."
    )


class Message(_ServerFrame):
    """`{"type":"message","channel":C,"id":ID,"event":E,"data":D}`: an event, live or replayed."""

    type: Literal["message"]
    channel: str
    id: str = Field(description="Opaque, unique per channel; resume after it.")
    event: str
    data: Any = Field(..., description="The published data (any JSON, `null` included).")


class Subscribed(_Reply):
    """`{"type":"subscribed","channel":C,"recovered":bool}`, after any replay.

    Also sent unasked (no `ref`, `recovered` false) on a live subscription whose
    continuity the server lost: refetch the channel's state.
    """

    type: Literal["subscribed"]
    channel: str
    recovered: bool = Field(
        description="False when `last_event_id` was given but nothing could be replayed "
        "without a gap, or when continuity was lost later: refetch the channel's state."
    )


class Unsubscribed(_Reply):
    """`{"type":"unsubscribed","channel":C}`; unasked, with a `reason`, when a refresh revoked it."""

    type: Literal["unsubscribed"]
    channel: str
    reason: str | None = Field(
        default=None,
        description="Why the server ended the subscription itself (a refreshed token "
        "no longer allows it); absent in the answer to `unsubscribe`.",
    )


class Published(_Reply):
    """`{"type":"published","channel":C,"id":ID}`: the event is stored and on its way.

    For a repeated `idempotency_key`, the id of the first publish (nothing new was stored).
    """

    type: Literal["published"]
    channel: str
    id: str


class Refreshed(_Reply):
    """`{"type":"refreshed"}`: the new token's claims govern the connection from now on."""

    type: Literal["refreshed"]


class Ping(_ServerFrame):
    """`{"type":"ping"}`, whenever nothing was sent for `HEARTBEAT_INTERVAL`; answer `pong`."""

    type: Literal["ping"]


class Error(_Reply):
    """`{"type":"error","code":K,"detail":"..."}`: a frame that was not acted on."""

    type: Literal["error"]
    code: ErrorCode
    detail: str


AnyServerFrame = Message | Subscribed | Unsubscribed | Published | Refreshed | Ping | Error
