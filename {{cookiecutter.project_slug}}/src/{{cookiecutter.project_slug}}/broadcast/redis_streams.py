"""How events live in Redis: key names, stream ids, the publish script, message payloads.

`StreamStore` is the one place that reads and writes them.

A channel's history is the stream at `<prefix><channel>`; its live events go out on
the pub/sub channel of the same name (keys and pub/sub channels are separate
namespaces in Redis). The stream id that `XADD` assigns is the event id.

On a Redis Cluster the channel name is a hash tag, `<prefix>{<channel>}`: every key
of one channel, and its sharded pub/sub channel, hash to the same slot, so one
node holds the channel and its publish stays one atomic script there. Channel
names can't contain braces, so the tag is always the whole channel name.
"""

from __future__ import annotations

from typing import Any

from ..events import Event
from .backend import BroadcasterUnavailable
from .redis_connect import REDIS_ERRORS

KEY_PREFIX = "realtime:"
MAX_ID_PART = 2**64 - 1
MAX_ID_DIGITS = len(str(MAX_ID_PART))

# One atomic step: store the event in history (trimmed to about `history_size`,
# expiring `history_ttl` seconds after the last publish), then announce it. A
# publish is never announced without being stored, nor stored without being
# announced. The payload is `<id>\n<name>\n<data>`: ids and names can't contain a
# newline and compact JSON never does. With an idempotency key (KEYS[2]) seen
# before, nothing happens and the first id is the answer; else the key keeps
# the new id for `history_ttl`. Returns {id, 1 if a duplicate else 0}.
PUBLISH_SCRIPT = """
if KEYS[2] then
  local first = redis.call('GET', KEYS[2])
  if first then return {first, 1} end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'n', ARGV[3], 'd', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if KEYS[2] then redis.call('SET', KEYS[2], id, 'EX', ARGV[2]) end
redis.call('PUBLISH', KEYS[1], id .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[4])
return {id, 0}
"""

# The same step on a cluster: the announcement goes out on sharded pub/sub, which
# only the node owning the channel's slot carries.
SHARDED_PUBLISH_SCRIPT = PUBLISH_SCRIPT.replace("redis.call('PUBLISH',", "redis.call('SPUBLISH',")
if SHARDED_PUBLISH_SCRIPT == PUBLISH_SCRIPT:  # pragma: no cover - guards edits of the script
    raise RuntimeError("the publish script must announce with redis.call('PUBLISH', ...)")

StreamId = tuple[int, int]
NO_ID: StreamId = (0, 0)  # the newest id of a stream that doesn't exist


def key_for(channel: str, prefix: str = KEY_PREFIX, *, cluster: bool = False) -> str:
    """The stream key, which is also the pub/sub channel, of `channel`.

    With `cluster` the channel is the key's hash tag (see the module's docstring).
    """
    return prefix + "{" + channel + "}" if cluster else prefix + channel


def channel_of(key: str, prefix: str = KEY_PREFIX, *, cluster: bool = False) -> str:
    """The channel whose stream key is `key` (the inverse of `key_for`)."""
    return key[len(prefix) + 1 : -1] if cluster else key[len(prefix) :]


def idempotency_key_for(stream_key: str, key: str) -> str:
    """Where a publish's idempotency key lives: beside the channel's stream key.

    Built on the stream key, so on a cluster it shares the channel's hash tag (and
    slot) and the publish script can touch both; a channel name never holds `/`.
    """
    return f"{stream_key}/idempotency/{key}"


def parse_id(event_id: str) -> StreamId | None:
    """`<ms>-<seq>` as a comparable pair, or None when it isn't a stream id."""
    ms, sep, seq = event_id.partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit() or not ms.isascii() or not seq.isascii():
        return None
    if len(ms) > MAX_ID_DIGITS or len(seq) > MAX_ID_DIGITS:
        return None  # before `int()`, which refuses (raises on) over 4,300 digits
    pair = (int(ms), int(seq))
    if pair[0] > MAX_ID_PART or pair[1] > MAX_ID_PART:
        return None
    return pair


def format_id(stream_id: StreamId) -> str:
    """The canonical text of a stream id."""
    return f"{stream_id[0]}-{stream_id[1]}"


def decode_entry(channel: str, entry: tuple[bytes, dict[bytes, bytes]]) -> Event:
    """An `XRANGE` entry as an event."""
    entry_id, fields = entry
    return Event(channel, entry_id.decode(), fields[b"n"].decode(), fields[b"d"])


def decode_message(channel: str, payload: bytes) -> Event | None:
    """A pub/sub payload as an event; None if it isn't one of ours."""
    parts = payload.split(b"\n", 2)
    if len(parts) != 3:
        return None
    event_id, name, data = parts
    return Event(channel, event_id.decode(), name.decode(), data)


class StreamStore:
    """Channels' histories in Redis Streams: publishing, reading, naming.

    `commands` is a client of one server or of a cluster (`cluster`: keys carry
    the channel as hash tag, and publishes announce on sharded pub/sub).
    """

    def __init__(
        self,
        commands: Any,
        *,
        history_size: int,
        history_ttl: int,
        prefix: str = KEY_PREFIX,
        cluster: bool = False,
    ) -> None:
        self.commands = commands
        self.prefix = prefix
        self._cluster = cluster
        self._history_size = history_size
        self._history_ttl = history_ttl
        script = SHARDED_PUBLISH_SCRIPT if cluster else PUBLISH_SCRIPT
        self._publish_script = commands.register_script(script)

    def key(self, channel: str) -> str:
        """The stream key, also the pub/sub channel, of `channel`."""
        return key_for(channel, self.prefix, cluster=self._cluster)

    def channel(self, key: str) -> str:
        """The channel whose stream key is `key`."""
        return channel_of(key, self.prefix, cluster=self._cluster)

    async def publish(
        self, channel: str, name: str, data: bytes, idempotency_key: str | None
    ) -> Event:
        """Store and announce one event (one atomic script); see `Broadcaster.publish`."""
        keys = [self.key(channel)]
        if idempotency_key is not None:
            keys.append(idempotency_key_for(keys[0], idempotency_key))
        try:
            raw_id, duplicate = await self._publish_script(
                keys=keys, args=[self._history_size, self._history_ttl, name, data]
            )
        except REDIS_ERRORS as exc:
            raise BroadcasterUnavailable(f"redis: {exc}") from exc
        event_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        return Event(channel, event_id, name, data, duplicate=bool(duplicate))

    async def history_after(self, channel: str, last_event_id: str) -> list[Event] | None:
        """Every event after `last_event_id`; None unless that id is still in the stream."""
        start = parse_id(last_event_id)
        if start is None:
            return None
        try:
            # From the id itself: if it is still in the stream, nothing after it
            # was trimmed; if it isn't, it's too old, expired or never existed.
            entries = await self.read(self.key(channel), format_id(start))
        except REDIS_ERRORS as exc:
            raise BroadcasterUnavailable(f"redis: {exc}") from exc
        if not entries or parse_id(entries[0].id) != start:
            return None
        return entries[1:]

    async def read_from(self, key: str, last_id: StreamId | None) -> list[Event]:
        """The stream at `key` from `last_id` on (all of it for None)."""
        return await self.read(key, "-" if last_id is None else format_id(last_id))

    async def latest(self, key: str) -> StreamId:
        """The newest id of the stream at `key` (NO_ID when there is none)."""
        entries: Any = await self.commands.xrevrange(key, count=1)
        if not entries:
            return NO_ID
        return parse_id(entries[0][0].decode()) or NO_ID

    async def read(self, key: str, start: str) -> list[Event]:
        """The stream at `key` from the id `start` on, as events."""
        # redis-py types entries loosely; without decode_responses they are
        # (bytes id, {bytes: bytes}) pairs.
        entries: Any = await self.commands.xrange(key, min=start)
        channel = self.channel(key)
        return [decode_entry(channel, entry) for entry in entries or ()]
