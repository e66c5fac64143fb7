"""WebSocket subscribers: `/ws` and a `subscribe` frame, framed by the `websockets` package.

`websockets`' sans-I/O `ClientProtocol` does the handshake checks and the
framing (fragments, pings, the close handshake) inside our own
`asyncio.Protocol`: no task per connection, which its asyncio client would need.
"""

from __future__ import annotations

import json
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from .subscriber import Subscriber

NAME = "websocket"
PONG = b'{"type":"pong"}'
MESSAGE = b'{"type":"message",'


class WebSocketSubscriber(Subscriber):
    """One WebSocket connection subscribed to one channel."""

    name = NAME

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # Incoming messages can be as big as the service allows; it enforces that.
        self._protocol = ClientProtocol(parse_uri(self.target.ws_url), max_size=None)
        self._fragments: list[bytes] = []

    def start(self) -> None:
        request = self._protocol.connect()
        request.headers["Authorization"] = f"Bearer {self.token}"
        self._protocol.send_request(request)
        self._flush()

    def received(self, data: bytes, now: float) -> None:
        protocol = self._protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Frame):
                self._frame(event, now)
            elif isinstance(event, Response):
                self._handshake_done(event)
        self._flush()
        if protocol.state is State.CLOSED or protocol.close_expected():
            self._closed()

    def _handshake_done(self, response: Response) -> None:
        error = self._protocol.handshake_exc
        if error is None:
            if self._protocol.state is not State.OPEN:
                return  # closed in the same read (a refused token): `_closed` says why
            subscribe = {"type": "subscribe", "channel": self.channel, "ref": "loadtest"}
            self._protocol.send_text(json.dumps(subscribe).encode())
        elif isinstance(error, InvalidStatus):
            self.fail(f"WebSocket handshake refused: HTTP {error.response.status_code}")
        else:
            self.fail(f"WebSocket handshake failed: {error}")

    def _frame(self, frame: Frame, now: float) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            # `bytes()` of a received frame's data (already bytes) copies nothing.
            if not frame.fin:
                self._fragments = [bytes(frame.data)]
                return
            self._message(bytes(frame.data), now)
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                self._message(b"".join(self._fragments), now)
                self._fragments = []

    def _message(self, data: bytes, now: float) -> None:
        if data.startswith(MESSAGE):
            # The service writes `data` last (events.py): slice it out, skip a JSON decode.
            start = data.find(b',"data":')
            if start > 0 and data.endswith(b"}"):
                self.tally.record_json(self.index, data[start + 8 : -1], now)
                return
        try:
            message = json.loads(data)
        except ValueError:
            self.tally.malformed += 1
            return
        kind = message.get("type") if type(message) is dict else None
        if kind == "message":
            self.tally.record(self.index, message.get("data"), now)
        elif kind == "ping":
            self.heartbeat(now)
            self._protocol.send_text(PONG)
        elif kind == "subscribed":
            self.ready()
        elif kind == "error":
            self.fail(f"the service answered {message.get('code')}: {message.get('detail')}")

    def _closed(self) -> None:
        # `close_rcvd`, not `close_code`: that one stays None until the TCP connection is gone.
        close = self._protocol.close_rcvd
        if close is None:
            self.fail("the connection closed without a close frame")
        else:
            reason = f" ({close.reason})" if close.reason else ""
            self.fail(f"closed by the service with {close.code}{reason}")
        self.close()

    def _flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        for data in self._protocol.data_to_send():
            if data:
                self.transport.write(data)
