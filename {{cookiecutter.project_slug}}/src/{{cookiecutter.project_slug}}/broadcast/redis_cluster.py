"""Listening to a Redis Cluster: sharded pub/sub, one connection per primary node.

Each channel lives in one slot (see `redis_streams`): its stream, and the sharded
pub/sub channel its publish script announces on with `SPUBLISH`. Commands go
through redis-py's cluster client, which follows `MOVED` and `ASK`. Listening is
one `PubSubListener` per primary node, each holding one sharded pub/sub
connection for the channels whose slots that node owns, so a worker has at most
one pub/sub connection per node however many channels it follows. redis-py's
own cluster pub/sub reconnects and resubscribes by itself, which would hide the
drops after which a channel must be backfilled; these listeners notice them.

A watcher keeps the listeners in step with the cluster's layout: it re-reads the
slot map every few seconds, and at once when a listener fails or a node gives a
channel's slot away (a failover or a slot migration). A channel that changes
node is subscribed on its new owner and backfilled from its stream after the
last event delivered, so local subscribers miss nothing the cluster kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from .backend import Sink
from .redis_connect import client_name, connect_node
from .redis_listener import PubSubListener, cancel_and_wait
from .redis_streams import StreamId, StreamStore

logger = logging.getLogger(__name__)

REFRESH_INTERVAL = 5.0  # how often the slot map is re-read while all is well
RETRY_INTERVAL = 0.5  # how soon after a failure (or a lost channel) it is re-read
STOP_TIMEOUT = 3.0
CANARY_TRIES = 100_000  # names tried for a canary in a node's slots
MOVE_CHECK = 0.25  # how often a wait for a channel looks whether it changed node


class _Node:
    """One primary's listener and the client its canary is published with."""

    __slots__ = ("canary_slot", "commands", "listener")

    def __init__(self, listener: PubSubListener, commands: Redis, canary_slot: int) -> None:
        self.listener = listener
        self.commands = commands
        self.canary_slot = canary_slot


class ClusterListener:
    """The listener interface of `PubSubListener`, spread over the cluster's primaries.

    `url` names any node of the cluster, `store` is on the cluster's client; node
    connections are named after `name_prefix`, canaries after `canary_prefix`.
    """

    def __init__(
        self, url: str, store: StreamStore, sink: Sink, *, name_prefix: str, canary_prefix: str
    ) -> None:
        self._url = url
        self._store = store
        self._sink = sink
        self._name_prefix = name_prefix
        self._canary_prefix = canary_prefix
        self._cluster: RedisCluster = store.commands
        self._nodes: dict[str, _Node] = {}  # by node name, host:port
        self._owner: dict[str, str | None] = {}  # open channel key -> node name
        # Channels not placed yet (no owner known), with the last id delivered.
        self._unplaced: dict[str, StreamId | None] = {}
        # Channels a node refused or gave away: placed again at the next read
        # of the layout, even if that still names the same node.
        self._displaced: set[str] = set()
        self._token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._poke = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._layout_known = False
        self._layout_failing = False
        self._became_up = asyncio.Event()

    # -- the listener interface ------------------------------------------------------

    @property
    def up(self) -> bool:
        """Every primary's listener is connected (and the layout is known)."""
        return (
            self._layout_known
            and not self._layout_failing
            and bool(self._nodes)
            and all(node.listener.up for node in self._nodes.values())
        )

    @property
    def failing(self) -> bool:
        """The cluster, or some node of it, is unreachable."""
        return self._layout_failing or any(n.listener.failing for n in self._nodes.values())

    async def start(self, wait: float) -> None:
        """Read the layout, start a listener per primary; wait up to `wait` s for all."""
        self._watcher = asyncio.create_task(self._watch(), name="redis-cluster-layout")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        # Up is a condition over every node's listener, which no one event signals.
        while not self.up and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if not self.up:
            logger.warning("redis cluster is not reachable yet; not ready until it is")

    async def stop(self) -> None:
        """Stop the watcher and every listener."""
        if self._watcher is not None:
            await cancel_and_wait([self._watcher], within=STOP_TIMEOUT)
        for node in list(self._nodes.values()):
            await self._stop_node(node)
        self._nodes.clear()

    def open(self, key: str) -> None:
        """Subscribe `key` on the node that owns its slot."""
        self._owner[key] = None
        self._assign(key, None)

    def close(self, key: str) -> None:
        """Unsubscribe `key`."""
        name = self._owner.pop(key, None)
        self._unplaced.pop(key, None)
        self._displaced.discard(key)
        if name is not None and name in self._nodes:
            self._nodes[name].listener.close(key)

    async def wait_ready(self, key: str, within: float) -> bool:
        """Wait until `key` is subscribed and caught up on the node that owns it.

        The owner may change meanwhile (the slot moved, or its primary failed
        over): the wait follows the channel to its new node.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while key in self._owner:
            name = self._owner[key]
            node = self._nodes.get(name) if name is not None else None
            if node is None:
                # Not placed yet: the layout is being read, or the cluster is down.
                if self.failing:
                    return False
            elif node.listener.failing:
                return False
            elif await node.listener.wait_ready(key, min(MOVE_CHECK, deadline - loop.time())):
                if self._owner.get(key) == name:
                    return True
                continue  # caught up on a node that has just given it away
            if loop.time() >= deadline:
                return False
            # Placing (or moving) it waits on the watcher's next read of the layout.
            await asyncio.sleep(0.05)
        return False

    def last_id(self, key: str) -> StreamId | None:
        """The newest id of `key` delivered here; None when unknown."""
        name = self._owner.get(key)
        if name is None or name not in self._nodes:
            return None
        return self._nodes[name].listener.last_id(key)

    # -- placing channels ----------------------------------------------------------

    def _owner_of(self, key: str) -> str | None:
        if not self._layout_known:
            return None
        with contextlib.suppress(Exception):  # a slot no node covers right now
            node = self._cluster.nodes_manager.get_node_from_slot(key_slot(key.encode()))
            return str(node.name)
        return None

    def _assign(self, key: str, after: StreamId | None) -> None:
        """Subscribe `key` on its owner, backfilling after `after`."""
        name = self._owner_of(key)
        if name is None or name not in self._nodes:
            self._owner[key] = None
            self._unplaced[key] = after
            self._poke.set()  # placed at the watcher's next read of the layout
            return
        self._owner[key] = name
        self._unplaced.pop(key, None)
        self._nodes[name].listener.open(key, after)

    def _moved(self, key: str) -> None:
        # The layout this worker read may still name the node that refused the
        # channel (the slot's new owner is told last, or the answer came from a
        # node not told yet): the channel is placed again until one accepts it.
        if key in self._owner:
            self._displaced.add(key)
        self._poke.set()

    # -- the layout watcher -------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            # Cleared before the read: a poke during it (a channel refused by the
            # node it was just placed on) must bring the next read soon.
            self._poke.clear()
            try:
                await self._refresh()
                if self._layout_failing:
                    logger.warning("redis cluster layout readable again")
                self._layout_failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: read it again soon
                if not self._layout_failing:
                    logger.warning("can't read the redis cluster layout (%s)", exc)
                self._layout_failing = True
            healthy = self.up
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_INTERVAL if healthy else RETRY_INTERVAL):
                    await self._poke.wait()
            await asyncio.sleep(RETRY_INTERVAL if healthy else 0)

    async def _refresh(self) -> None:
        if self._layout_known:
            await self._cluster.nodes_manager.initialize()
        else:
            # The first time through the client itself, which also learns the
            # commands' key positions from the cluster.
            await self._cluster.initialize()
        self._layout_known = True
        primaries = {node.name: node for node in self._cluster.get_primaries()}
        # A listener whose node is no longer a primary, or whose canary's slot
        # moved away, is replaced; its channels go to their new owners.
        moved: dict[str, StreamId | None] = {}
        for name, node in list(self._nodes.items()):
            canary_owner = self._owner_of_slot(node.canary_slot)
            if name not in primaries or canary_owner != name:
                for key in node.listener.channel_keys():
                    moved[key] = node.listener.close(key)
                del self._nodes[name]
                await self._stop_node(node)
        for name, primary in primaries.items():
            if name not in self._nodes and (started := await self._start_node(primary)):
                self._nodes[name] = started
        # Channels whose slot changed owner, that a node refused or gave away, or
        # that couldn't be placed before.
        displaced, self._displaced = self._displaced, set()
        for key, owner in list(self._owner.items()):
            if key in moved:
                self._assign(key, moved[key])
            elif owner is None:
                self._assign(key, self._unplaced.get(key))
            elif key in displaced or self._owner_of(key) != owner:
                after = self._nodes[owner].listener.close(key) if owner in self._nodes else None
                self._assign(key, after)

    def _owner_of_slot(self, slot: int) -> str | None:
        with contextlib.suppress(Exception):
            return str(self._cluster.nodes_manager.get_node_from_slot(slot).name)
        return None

    async def _start_node(self, primary: ClusterNode) -> _Node | None:
        # The canary must hash to a slot this node owns, or it couldn't hear it.
        prefix = self._canary_prefix
        for n in range(CANARY_TRIES):
            canary = prefix + "{" + f"{self._token}:{n}" + "}"
            slot = key_slot(canary.encode())
            if self._owner_of_slot(slot) == primary.name:
                break
        else:
            return None  # a primary without slots has no channels to listen to
        commands = self._node_client(primary, "canary")
        listener = PubSubListener(
            self._node_client(primary, "pubsub"),
            commands,
            self._store,
            self._sink,
            canary_prefix=prefix,
            sharded=True,
            canary=canary,
            on_moved=self._moved,
        )
        node = _Node(listener, commands, slot)
        await listener.start(wait=0)
        return node

    def _node_client(self, node: ClusterNode, role: str) -> Redis:
        return connect_node(self._url, node, client_name(self._name_prefix, role))

    async def _stop_node(self, node: _Node) -> None:
        await node.listener.stop()
        await node.commands.aclose()
