"""How events live in Redis: key names, stream ids, the publish script, message payloads.

A channel's history is the stream at `<prefix><channel>`; its live events go out on
the pub/sub channel of the same name (keys and pub/sub channels are separate
namespaces in Redis). The stream id that `XADD` assigns is the event id.

On a Redis Cluster the channel name is a hash tag, `<prefix>{<channel>}`: every key
of one channel, and its sharded pub/sub channel, hash to the same slot, so one
node holds the channel and its publish stays one atomic script there. Channel
names can't contain braces, so the tag is always the whole channel name.
"""

from __future__ import annotations

from ..events import Event

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
