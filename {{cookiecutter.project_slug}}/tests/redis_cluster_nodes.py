"""A real Redis Cluster for the tests: `REDIS_CLUSTER_NODES`, or one started here.

Without `REDIS_CLUSTER_NODES` (comma-separated `host:port` of a running
cluster's nodes) the tests start `redis-server --cluster-enabled yes` nodes on
free ports, join them with `redis-cli --cluster create` and wait until the
cluster state is ok; every node is killed by pid at the end. Under `CI=true` a
missing `redis-server` or `redis-cli` fails the run instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from {{ cookiecutter.project_slug }}.broadcast.redis_streams import key_for

from redis_server import RedisServerProcess
from servers import wait_for

NODE_TIMEOUT_MS = 2000  # how soon the other nodes call a silent node failed


class Cluster:
    """A Redis Cluster's nodes; `processes` when the tests started them (else empty)."""

    def __init__(self, addresses: list[tuple[str, int]], processes: list[RedisServerProcess]):
        self.addresses = addresses
        self.processes = processes

    @property
    def url(self) -> str:
        """A URL naming one node (any node will do for a cluster client)."""
        host, port = self.addresses[0]
        return f"redis://{host}:{port}/0"

    def client(self) -> RedisCluster:
        """A cluster client for inspecting and disturbing the cluster."""
        # Every node as a starting point: the first may be the one a test killed.
        nodes = [ClusterNode(host, port) for host, port in self.addresses]
        return RedisCluster(startup_nodes=nodes, decode_responses=True)

    def node(self, address: tuple[str, int]) -> redis.Redis:
        """A plain client of one node."""
        return redis.Redis(host=address[0], port=address[1], decode_responses=True)

    def primaries(self) -> list[tuple[str, int]]:
        """The primaries' addresses, in the order of the slots they own."""
        client = self.client()
        try:
            return sorted({(n.host, n.port) for n in client.get_primaries()})
        finally:
            client.close()

    def owner(self, channel: str) -> tuple[str, int]:
        """The primary that owns `channel`'s slot (as the first live node sees it)."""
        client = self.client()
        try:
            node = client.nodes_manager.get_node_from_slot(
                key_slot(key_for(channel, cluster=True).encode())
            )
            return (node.host, node.port)
        finally:
            client.close()

    def channels_on_every_primary(
        self, prefix: str, per_node: int = 1
    ) -> dict[tuple[str, int], list[str]]:
        """Channel names (`prefix` + a number) spread so that each primary owns `per_node`."""
        client = self.client()
        try:
            found: dict[tuple[str, int], list[str]] = {
                (n.host, n.port): [] for n in client.get_primaries()
            }
            for n in range(100_000):
                name = f"{prefix}{n}"
                node = client.nodes_manager.get_node_from_slot(
                    key_slot(key_for(name, cluster=True).encode())
                )
                names = found[(node.host, node.port)]
                if len(names) < per_node:
                    names.append(name)
                if all(len(v) == per_node for v in found.values()):
                    return found
        finally:
            client.close()
        raise AssertionError("could not place a channel on every primary")

    def process(self, address: tuple[str, int]) -> RedisServerProcess:
        """The process of a node the tests started."""
        return next(p for p in self.processes if ("127.0.0.1", p.port) == address)

    def begin_migration(self, slot: int, source: tuple[str, int], target: tuple[str, int]) -> None:
        """Mark `slot` IMPORTING on `target` and MIGRATING on `source`; no key moves yet."""
        with self.node(source) as src, self.node(target) as dst:
            dst.cluster("SETSLOT", slot, "IMPORTING", src.cluster("MYID"))
            src.cluster("SETSLOT", slot, "MIGRATING", dst.cluster("MYID"))

    def move_keys(
        self, slot: int, source: tuple[str, int], target: tuple[str, int], keys: list[str] | None
    ) -> None:
        """Move `keys` (every key of `slot` for None) of a migrating slot to `target`."""
        migrate = ("MIGRATE", target[0], target[1], "", 0, 5000, "KEYS")
        with self.node(source) as src:
            if keys is not None:
                src.execute_command(*migrate, *keys)
                return
            while batch := src.cluster("GETKEYSINSLOT", slot, 100):
                src.execute_command(*migrate, *batch)

    def end_migration(
        self, slot: int, target: tuple[str, int], nodes: list[tuple[str, int]] | None = None
    ) -> None:
        """Give `slot` to `target` on `nodes` (default: every node); its keys must have moved."""
        with self.node(target) as dst:
            target_id = dst.cluster("MYID")
        for address in self.addresses if nodes is None else nodes:
            with self.node(address) as node:
                node.cluster("SETSLOT", slot, "NODE", target_id)

    def keys_in_slot(self, address: tuple[str, int], slot: int) -> list[str]:
        """The keys of `slot` that one node holds."""
        with self.node(address) as node:
            return list(node.cluster("GETKEYSINSLOT", slot, 1000))

    def state_ok(self) -> bool:
        """Every node answers and reports `cluster_state:ok`."""
        for address in self.addresses:
            try:
                with self.node(address) as node:
                    if node.cluster("INFO").get("cluster_state") != "ok":
                        return False
            except (redis.RedisError, OSError):
                return False
        return True

    def stop(self) -> None:
        """Kill every node the tests started."""
        for process in self.processes:
            process.stop()


def require_cluster_tools() -> tuple[str, str]:
    """`redis-server` and `redis-cli`; fail under CI, skip elsewhere, when missing."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        message = (
            "a Redis Cluster needs redis-server and redis-cli on PATH (or set REDIS_CLUSTER_NODES)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return server, cli


def start_cluster(
    directory: Path, primaries: int = 3, replicas: int = 0, durable: bool = False
) -> Cluster:
    """Start and join `primaries` x (1 + `replicas`) cluster nodes on free ports."""
    server, cli = require_cluster_tools()
    args = [
        *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
        *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
        # A replica's first sync starts at once, not after the default 5 s wait.
        *("--repl-diskless-sync-delay", "0"),
        # Durable nodes keep their data across a kill, like a real deployment's.
        *(("--appendonly", "yes", "--appendfsync", "always") if durable else ()),
    ]
    processes: list[RedisServerProcess] = []
    try:
        for n in range(primaries * (1 + replicas)):
            node = RedisServerProcess(
                server, directory / f"node-{n}", extra_args=args, cluster_bus=True
            )
            processes.append(node.start())
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p.port}" for p in processes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        cluster = Cluster([("127.0.0.1", p.port) for p in processes], processes)
        wait_for(cluster.state_ok, 30, "the cluster never reached cluster_state:ok")
        wait_for(
            lambda: len(cluster.primaries()) == primaries, 30, "not every primary took its slots"
        )
        return cluster
    except BaseException:
        for process in processes:
            process.stop()
        raise


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster most tests share: `REDIS_CLUSTER_NODES` when set, else three started nodes."""
    nodes = os.environ.get("REDIS_CLUSTER_NODES")
    if nodes:
        addresses = []
        for node in nodes.split(","):
            host, _, port = node.strip().rpartition(":")
            addresses.append((host, int(port)))
        yield Cluster(addresses, [])
        return
    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()
