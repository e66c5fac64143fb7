"""How this service connects to Redis: one set of options for every client it opens.

No retries inside redis-py: a failed publish is answered 503 rather than stored
twice, and a dropped pub/sub connection must be noticed (and backfilled) rather
than silently replaced. Short timeouts: during an outage a publish fails fast
rather than hanging.
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0
# What a failed command raises (the cluster client's own errors aren't RedisErrors).
REDIS_ERRORS = (RedisError, RedisClusterException, OSError)


def client_name(prefix: str, role: str) -> str:
    """The name a connection shows in `CLIENT LIST`: its role, host and process."""
    return f"{prefix}{role}:{socket.gethostname()}:{os.getpid()}"


def _options(name: str) -> dict[str, Any]:
    return {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
        "client_name": name,
    }


def connect(url: str, name: str) -> Redis:
    """A client of the Redis server `url` names."""
    return Redis.from_url(url, **_options(name))


def connect_cluster(url: str, name: str) -> RedisCluster:
    """A client of the Redis Cluster that `url` names any node of.

    Redirections (MOVED, ASK) are still followed; connection errors are not retried.
    """
    return RedisCluster.from_url(url, require_full_coverage=False, **_options(name))


def connect_node(url: str, node: ClusterNode, name: str) -> Redis:
    """A plain client of one cluster node, with the same credentials and options as `url`."""
    parts = urlsplit(url)
    credentials, _, _ = parts.netloc.rpartition("@")
    netloc = f"{credentials}@" if credentials else ""
    netloc += f"[{node.host}]" if ":" in node.host else node.host
    return connect(urlunsplit(parts._replace(netloc=f"{netloc}:{node.port}", path="/0")), name)
