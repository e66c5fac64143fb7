#!/usr/bin/env python3
"""Load driver: starts one server, runs a plan of scenarios against it, prints one JSON object.

The server is any command line (`{host}` and `{port}` are substituted) that serves
the benchmark's minimal URLs:

    POST /channels/{channel}/events   publish {"event": ..., "data": ...} (Bearer token)
    GET  /channels/{channel}/events   SSE stream (?token=)
    WS   /ws                          {"type": "subscribe", "channel": ...} frames (?token=)
    WS   /socket.io/                  Socket.IO peers: emit "subscribe", receive "message"
    GET  /healthz                     200 once the server is ready

Clients are hand-written asyncio Protocols (raw HTTP/1.1 with chunked decoding for
SSE, raw RFC 6455 framing for WebSocket, the few Engine.IO/Socket.IO packets a
subscriber needs) so that the driver spends as little CPU as it can per delivered
event. Every published payload carries {"s": <seq>, "t": <time.monotonic() at send>};
latency is receive time minus t (one process, one clock).

Scenarios (one plan runs them in order on the same server process):
  idle    KiB of server RSS (whole process tree, so every worker) per idle
          subscriber: RSS before and after N connections, one warm-up first.
  fanout  N subscribers on one channel, M events published back to back over
          keep-alive connections: delivered events/s, latency percentiles, losses.
          With several workers, client connections are mapped to the worker that
          accepted them (from /proc) and reported as subscribers per worker.

Tokens are HS256 JWTs signed with --jwt-secret (passed to the server as
JWT_SECRET), claims `subscribe`/`publish` ["*"]. Only loopback targets are
allowed; every wait is bounded.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import resource
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any

try:  # optional: lowers the driver's own cost per event
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

monotonic = time.monotonic
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*a: Any) -> None:
    print("[driver]", *a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- JWT
def _b64url(b: bytes) -> bytes:
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def mint_jwt(
    secret: str,
    sub: str = "bench",
    ttl: int = 3600,
    subscribe=("*",),
    publish=("*",),
    aud: str | None = None,
    iss: str | None = None,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "iat": now,
        "exp": now + ttl,
        "subscribe": list(subscribe),
        "publish": list(publish),
    }
    if aud:
        claims["aud"] = aud
    if iss:
        claims["iss"] = iss
    h = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    p = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = _b64url(hmac.new(secret.encode(), h + b"." + p, hashlib.sha256).digest())
    return (h + b"." + p + b"." + sig).decode()


# --------------------------------------------------------------------------- /proc helpers
def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rfind(b")") + 2 :].split()  # fields from #3 (state) on


def proc_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat_fields(int(d))
            if st:
                children.setdefault(int(st[1]), []).append(int(d))
    out, stack = [], [root]
    while stack:
        p = stack.pop()
        if os.path.exists(f"/proc/{p}"):
            out.append(p)
            stack.extend(children.get(p, []))
    return out


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid: int) -> float:
    st = _stat_fields(pid)
    if not st:
        return 0.0
    return (int(st[11]) + int(st[12])) / CLK_TCK  # utime + stime


def _tcp_table() -> dict[int, tuple[int, int, str]]:
    """inode -> (local_port, remote_port, state) for loopback TCP sockets."""
    out: dict[int, tuple[int, int, str]] = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    lport = int(p[1].rsplit(":", 1)[1], 16)
                    rport = int(p[2].rsplit(":", 1)[1], 16)
                    out[int(p[9])] = (lport, rport, p[3])
        except OSError:
            pass
    return out


def _socket_inodes(pid: int) -> list[int]:
    res = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                res.append(int(link[8:-1]))
    except OSError:
        pass
    return res


def conn_owner(pids: list[int], server_port: int) -> dict[int, int]:
    """client local port -> server pid that holds the accepted socket."""
    table = _tcp_table()
    owner: dict[int, int] = {}
    for pid in pids:
        for ino in _socket_inodes(pid):
            e = table.get(ino)
            if e and e[0] == server_port and e[2] == "01":
                owner[e[1]] = pid
    return owner


# --------------------------------------------------------------------------- server process
_SERVERS: list[ServerProc] = []  # stopped in main()'s finally, also on SIGTERM/SIGINT


class ServerProc:
    def __init__(
        self, cmd: str, env: dict[str, str], cwd: str | None, host: str, port: int, log_path: str
    ):
        self.cmd = cmd.replace("{port}", str(port)).replace("{host}", host)
        self.env = env
        self.cwd = cwd
        self.host, self.port = host, port
        self.log_path = log_path
        self.p: subprocess.Popen | None = None

    def start(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)
        _SERVERS.append(self)
        self.log_f = open(self.log_path, "ab")  # noqa: SIM115 - open for as long as the server runs
        self.log_f.write(f"\n===== {time.strftime('%H:%M:%S')} {self.cmd}\n".encode())
        self.log_f.flush()
        self.p = subprocess.Popen(
            shlex.split(self.cmd),
            env=self.env,
            cwd=self.cwd,
            stdout=self.log_f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log(f"server pid {self.p.pid}: {self.cmd}")

    async def wait_healthy(self, timeout: float = 30.0) -> float:
        t0 = monotonic()
        while monotonic() - t0 < timeout:
            if self.p.poll() is not None:
                raise RuntimeError(f"server exited with {self.p.returncode}; see {self.log_path}")
            try:
                st, _, _ = await http_request(self.host, self.port, "GET", "/healthz", timeout=1.0)
                if st == 200:
                    return monotonic() - t0
            except (TimeoutError, OSError, ValueError):
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("server did not answer /healthz in time")

    def pids(self) -> list[int]:
        return proc_tree(self.p.pid) if self.p else []

    def workers(self) -> list[int]:
        """pids that hold accepted sockets (workers); the root if it is alone."""
        return self.pids()

    def rss_kib(self) -> int:
        return sum(rss_kib(p) for p in self.pids())

    def cpu_s(self) -> float:
        return sum(cpu_s(p) for p in self.pids())

    def stop(self, grace: float = 15.0) -> dict[str, Any]:
        if not self.p:
            return {}
        tree = self.pids()
        t0 = monotonic()
        killed = False
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                killed = True
        # whatever of the tree (collected before) is still alive and still ours: SIGKILL by pid
        alive_tree = set(proc_tree(self.p.pid)) if self.p.poll() is None else set()
        for pid in tree:
            if pid in alive_tree or (
                pid != self.p.pid
                and os.path.exists(f"/proc/{pid}")
                and _stat_fields(pid)
                and int(_stat_fields(pid)[1]) in tree
            ):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed = True
                except OSError:
                    pass
        if self.p.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.p.wait(timeout=5)
        dt = monotonic() - t0
        if not self.log_f.closed:
            self.log_f.close()
        return {"stop_s": round(dt, 2), "stop_killed": killed, "exit_code": self.p.returncode}


# --------------------------------------------------------------------------- tiny HTTP client
async def http_request(
    host: str,
    port: int,
    method: str,
    path: str,
    headers: dict | None = None,
    body: bytes = b"",
    timeout: float = 5.0,
) -> tuple[int, dict, bytes]:
    async def _do():
        r, w = await asyncio.open_connection(host, port)
        try:
            hs = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            w.write(
                f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{hs}Content-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + body
            )
            return await _read_response(r)
        finally:
            w.close()

    return await asyncio.wait_for(_do(), timeout)


async def _read_response(r: asyncio.StreamReader) -> tuple[int, dict, bytes]:
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    if "content-length" in hdrs:
        body = await r.readexactly(int(hdrs["content-length"]))
    elif hdrs.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await r.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await r.readuntil(b"\r\n")
                break
            parts.append(await r.readexactly(size))
            await r.readexactly(2)
        body = b"".join(parts)
    else:
        body = b""
    return status, hdrs, body


# --------------------------------------------------------------------------- stats
class Stats:
    def __init__(self, n: int) -> None:
        self.n = n
        self.count = [0] * n
        self.lat = [array.array("d") for _ in range(n)]
        self.seq = [array.array("i") for _ in range(n)]
        self.last = [-1] * n
        self.reorder = 0
        self.dups = 0
        self.warm = [0] * n
        self.heartbeats = [0] * n
        self.other_events = 0
        self.bad = 0
        self.errors = 0
        self.total = 0
        self.first_recv = 0.0
        self.last_recv = 0.0
        self.measuring = False
        self.closed: dict[int, Any] = {}

    def on_payload(self, idx: int, d: Any, now: float) -> None:
        if isinstance(d, dict) and "s" not in d and isinstance(d.get("data"), dict):
            d = d["data"]  # tolerate servers that wrap the published body
        if not isinstance(d, dict) or "s" not in d or "t" not in d:
            self.other_events += 1
            return
        s = d["s"]
        if s < 0:  # warm-up message
            self.warm[idx] += 1
            return
        if not self.measuring:
            return
        if s <= self.last[idx]:
            if s == self.last[idx] or s in self.seq[idx]:
                self.dups += 1
                return
            self.reorder += 1
        else:
            self.last[idx] = s
        self.count[idx] += 1
        self.total += 1
        self.lat[idx].append(now - d["t"])
        self.seq[idx].append(s)
        if not self.first_recv:
            self.first_recv = now
        self.last_recv = now

    def on_data(self, idx: int, data: bytes, now: float) -> None:
        try:
            obj = json.loads(data)
        except ValueError:
            self.bad += 1
            return
        self.on_payload(idx, obj, now)


# --------------------------------------------------------------------------- SSE subscriber
class SSEClient(asyncio.Protocol):
    kind = "sse"

    def __init__(
        self,
        idx: int,
        stats: Stats,
        host: str,
        port: int,
        path: str,
        extra_headers: dict | None = None,
    ):
        self.idx, self.stats = idx, stats
        self.req = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
            f"Cache-Control: no-cache\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in (extra_headers or {}).items())
            + "\r\n"
        ).encode()
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.hdr_done = False
        self.hbuf = b""
        self.chunked = False
        self.cbuf = bytearray()
        self.chunk_left = 0
        self.sbuf = b""
        self.transport = None
        self.lost = False
        self.local_port = 0

    def connection_made(self, transport):
        self.transport = transport
        self.local_port = transport.get_extra_info("sockname")[1]
        transport.write(self.req)

    def connection_lost(self, exc):
        self.lost = True
        self.stats.closed[self.idx] = "eof" if exc is None else repr(exc)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before stream started"))

    def data_received(self, data: bytes) -> None:
        now = monotonic()
        if not self.hdr_done:
            self.hbuf += data
            i = self.hbuf.find(b"\r\n\r\n")
            if i < 0:
                return
            head, data = self.hbuf[:i], self.hbuf[i + 4 :]
            self.hbuf = b""
            self.hdr_done = True
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"transfer-encoding" and b"chunked" in v.lower():
                    self.chunked = True
            if status != 200:
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(f"SSE status {status}"))
                self.transport.close()
                return
            if not self.ready.done():
                self.ready.set_result(True)
            if not data:
                return
        if self.chunked:
            data = self._dechunk(data)
            if not data:
                return
        self._feed(data, now)

    def _dechunk(self, data: bytes) -> bytes:
        buf = self.cbuf
        buf += data
        out = []
        while buf:
            if self.chunk_left == 0:
                i = buf.find(b"\r\n")
                if i < 0:
                    break
                if i == 0:
                    del buf[:2]
                    continue
                size = int(bytes(buf[:i]).split(b";")[0], 16)
                del buf[: i + 2]
                if size == 0:
                    self.transport.close()
                    break
                self.chunk_left = size
            else:
                take = min(self.chunk_left, len(buf))
                out.append(bytes(buf[:take]))
                del buf[:take]
                self.chunk_left -= take
        return b"".join(out)

    def _feed(self, data: bytes, now: float) -> None:
        b = self.sbuf + data if self.sbuf else data
        if b"\r" in b:
            b = b.replace(b"\r\n", b"\n")
        pos = 0
        while True:
            i = b.find(b"\n\n", pos)
            if i < 0:
                break
            self._block(b[pos:i], now)
            pos = i + 2
        self.sbuf = b[pos:]

    def _block(self, block: bytes, now: float) -> None:
        data = None
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                v = line[5:]
                if v[:1] == b" ":
                    v = v[1:]
                data = v if data is None else data + b"\n" + v
            elif line.startswith(b":"):
                self.stats.heartbeats[self.idx] += 1
        if data is not None:
            self.stats.on_data(self.idx, data, now)

    def close(self):
        if self.transport and not self.lost:
            self.transport.abort()


# --------------------------------------------------------------------------- WebSocket subscriber
def ws_client_frame(payload: bytes, opcode: int = 1) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + struct.pack("!H", n)
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + struct.pack("!Q", n)
    mask = os.urandom(4)
    if n:
        m = (mask * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")
    return head + mask + payload


class WSClient(asyncio.Protocol):
    kind = "ws"

    def __init__(
        self,
        idx: int,
        stats: Stats,
        host: str,
        port: int,
        path: str,
        channel: str,
        extra_headers: dict | None = None,
    ):
        self.idx, self.stats, self.channel = idx, stats, channel
        key = base64.b64encode(os.urandom(16)).decode()
        self.req = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in (extra_headers or {}).items())
            + "\r\n"
        ).encode()
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.upgraded = False
        self.hbuf = b""
        self.buf = b""
        self.frag: list[bytes] = []
        self.frag_op = 0
        self.transport = None
        self.lost = False
        self.close_code: int | None = None
        self.local_port = 0

    def connection_made(self, transport):
        self.transport = transport
        self.local_port = transport.get_extra_info("sockname")[1]
        transport.write(self.req)

    def connection_lost(self, exc):
        self.lost = True
        self.stats.closed[self.idx] = self.close_code if self.close_code is not None else "eof"
        if not self.ready.done():
            self.ready.set_exception(
                ConnectionError(f"closed before subscribed (code {self.close_code})")
            )

    def send_json(self, obj: Any) -> None:
        if self.transport and not self.lost:
            self.transport.write(ws_client_frame(json.dumps(obj, separators=(",", ":")).encode()))

    def data_received(self, data: bytes) -> None:
        now = monotonic()
        if not self.upgraded:
            self.hbuf += data
            i = self.hbuf.find(b"\r\n\r\n")
            if i < 0:
                return
            head, data = self.hbuf[:i], self.hbuf[i + 4 :]
            self.hbuf = b""
            status = int(head.split(b" ", 2)[1])
            if status != 101:
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(f"WS handshake status {status}"))
                self.transport.close()
                return
            self.upgraded = True
            self.on_open()
            if not data:
                return
        if self.buf:
            data = self.buf + data
        pos, n = 0, len(data)
        while n - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            ln = b1 & 0x7F
            hp = pos + 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = (data[pos + 2] << 8) | data[pos + 3]
                hp = pos + 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = int.from_bytes(data[pos + 2 : pos + 10], "big")
                hp = pos + 10
            mask = None
            if b1 & 0x80:
                mask = data[hp : hp + 4]
                hp += 4
            end = hp + ln
            if end > n:
                break
            payload = data[hp:end]
            if mask:
                m = (mask * (ln // 4 + 1))[:ln]
                payload = (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(
                    ln, "big"
                )
            pos = end
            self._frame(b0 & 0x0F, b0 & 0x80, payload, now)
        self.buf = data[pos:] if pos < n else b""

    def on_open(self) -> None:
        """Upgraded: subscribe to the channel."""
        self.send_json({"type": "subscribe", "channel": self.channel, "ref": "sub"})

    def on_text(self, payload: bytes, now: float) -> None:
        try:
            obj = json.loads(payload)
        except ValueError:
            self.stats.bad += 1
            return
        t = obj.get("type") if isinstance(obj, dict) else None
        if t == "message":
            self.stats.on_payload(self.idx, obj.get("data"), now)
        elif t == "ping":
            self.stats.heartbeats[self.idx] += 1
            self.send_json({"type": "pong"})
        elif t == "subscribed":
            if not self.ready.done():
                self.ready.set_result(True)
        elif t == "error":
            self.stats.errors += 1
            if not self.ready.done():
                self.ready.set_exception(ConnectionError(f"WS error frame {obj}"))

    def _frame(self, op: int, fin: int, payload: bytes, now: float) -> None:
        if op == 0:
            self.frag.append(payload)
            if not fin:
                return
            payload, op = b"".join(self.frag), self.frag_op
            self.frag = []
        elif op in (1, 2) and not fin:
            self.frag, self.frag_op = [payload], op
            return
        if op == 1 or op == 2:
            self.on_text(payload, now)
        elif op == 8:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if not self.lost:
                self.transport.write(ws_client_frame(payload[:2], 8))
                self.transport.close()
        elif op == 9 and not self.lost:
            self.transport.write(ws_client_frame(payload, 10))

    def close(self):
        if self.transport and not self.lost:
            self.transport.abort()


# --------------------------------------------------------------------------- publisher
class Publisher:
    """Keep-alive HTTP/1.1 POSTs; K connections used round-robin (seq % K)."""

    def __init__(self, host: str, port: int, token: str, channel: str, conns: int = 1):
        self.host, self.port, self.token, self.channel, self.k = host, port, token, channel, conns
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = [None] * conns
        self.local_ports: list[int] = [0] * conns
        self.path = f"/channels/{channel}/events"
        self.head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.status_counts: dict[int, int] = {}
        self.reconnects = 0

    async def _conn(self, i: int):
        c = self.conns[i]
        if c is None:
            r, w = await asyncio.open_connection(self.host, self.port)
            w.transport.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
            self.local_ports[i] = w.get_extra_info("sockname")[1]
            c = self.conns[i] = (r, w)
        return c

    async def connect(self):
        for i in range(self.k):
            await self._conn(i)

    async def publish(self, seq: int, pad: str, timeout: float) -> tuple[int, float]:
        i = seq % self.k if seq >= 0 else 0
        for attempt in (0, 1):
            reused = self.conns[i] is not None
            r, w = await self._conn(i)
            t = monotonic()
            body = b'{"event":"bench","data":{"s":%d,"t":%.9f,"pad":"%s"}}' % (seq, t, pad.encode())
            w.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
            try:
                status, hdrs, _ = await asyncio.wait_for(_read_response(r), timeout)
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                w.close()
                self.conns[i] = None
                stale = not (isinstance(e, asyncio.IncompleteReadError) and e.partial)
                if reused and attempt == 0 and stale:
                    # the server closed an idle keep-alive connection (uvicorn: 5 s): reconnect, resend once
                    self.reconnects += 1
                    continue
                raise
            except BaseException:
                w.close()
                self.conns[i] = None
                raise
            if hdrs.get("connection", "").lower() == "close":
                w.close()
                self.conns[i] = None
            self.status_counts[status] = self.status_counts.get(status, 0) + 1
            return status, monotonic() - t
        raise ConnectionError("unreachable")

    def close(self):
        for c in self.conns:
            if c:
                c[1].close()


# --------------------------------------------------------------------------- helpers
def pct(sorted_vals, q: float) -> float | None:
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, round(q / 100.0 * (len(sorted_vals) - 1))))
    return sorted_vals[k]


def lat_summary(vals) -> dict[str, Any]:
    s = sorted(vals)
    ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
    return {
        "p50_ms": ms(pct(s, 50)),
        "p90_ms": ms(pct(s, 90)),
        "p99_ms": ms(pct(s, 99)),
        "max_ms": ms(s[-1] if s else None),
        "samples": len(s),
    }


# --------------------------------------------------------------------------- Socket.IO subscriber
class SIOClient(WSClient):
    """A Socket.IO v5 client over Engine.IO v4's WebSocket transport (no polling), subscriber only.

    Packets are Engine.IO type digit + Socket.IO type digit + JSON: `0{...}` open, `2` ping
    (answer `3`), `40` connect to the default namespace, `42[event, data]` an event."""

    def on_open(self) -> None:
        self.transport.write(ws_client_frame(b"40" + json.dumps({"token": self.token}).encode()))

    def on_text(self, payload: bytes, now: float) -> None:
        if payload[:2] == b"42":
            try:
                name, data = json.loads(payload[2:])[:2]
            except ValueError:
                self.stats.bad += 1
                return
            if name == "message":
                self.stats.on_payload(self.idx, data, now)
            elif name == "subscribed" and not self.ready.done():
                self.ready.set_result(True)
        elif payload == b"2":
            self.stats.heartbeats[self.idx] += 1
            self.transport.write(ws_client_frame(b"3"))
        elif payload[:2] == b"40":
            self.transport.write(
                ws_client_frame(b"42" + json.dumps(["subscribe", self.channel]).encode())
            )
        elif payload[:2] == b"44":
            self.stats.errors += 1
            if not self.ready.done():
                self.ready.set_exception(
                    ConnectionError(f"Socket.IO connect refused: {payload[:200]!r}")
                )


# --------------------------------------------------------------------------- scenarios
class Runner:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.host, self.port = a.host, a.port
        self.token = mint_jwt(a.jwt_secret)
        self.clients: list = []

    def client(self, idx: int, stats: Stats, channel: str):
        if self.a.transport == "sse":
            return SSEClient(
                idx, stats, self.host, self.port, f"/channels/{channel}/events?token={self.token}"
            )
        if self.a.transport == "ws":
            return WSClient(idx, stats, self.host, self.port, f"/ws?token={self.token}", channel)
        c = SIOClient(
            idx, stats, self.host, self.port, "/socket.io/?EIO=4&transport=websocket", channel
        )
        c.token = self.token
        return c

    async def open_clients(
        self, n: int, channel: str, stats: Stats, conc: int = 100, timeout: float = 90.0
    ) -> tuple[list, int, float]:
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(conc)
        failures: list[str] = []
        made: list = []
        t0 = monotonic()

        async def one(i: int):
            async with sem:
                proto = self.client(i, stats, channel)
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await asyncio.wait_for(loop.sock_connect(sock, (self.host, self.port)), 10)
                    await loop.create_connection(lambda: proto, sock=sock)
                    await asyncio.wait_for(asyncio.shield(proto.ready), 20)
                    made.append(proto)
                except Exception as e:
                    failures.append(repr(e))
                    proto.close() if proto.transport else sock.close()

        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), timeout)
        self.clients.extend(made)
        if failures:
            log(f"{len(failures)} connect failures, e.g. {failures[:3]}")
        return made, len(failures), monotonic() - t0

    async def warmup(
        self, pub: Publisher, stats: Stats, clients: list, timeout: float = 15.0
    ) -> bool:
        """Publish warm-up events (seq < 0) until every subscriber has received one.

        A server may subscribe a client only after it has sent the response headers, so the
        first warm-up event can miss some: keep publishing (bounded) instead of assuming."""
        t0 = monotonic()
        j = 0
        while monotonic() - t0 < timeout:
            try:
                await pub.publish(-1 - j, "", timeout=10)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
                log(f"warm-up publish failed: {e!r}")
            j += 1
            t1 = monotonic()
            while monotonic() - t1 < 0.5:
                if all(stats.warm[c.idx] >= 1 for c in clients):
                    await asyncio.sleep(0.1)  # let the last warm-up event reach stragglers
                    return True
                await asyncio.sleep(0.02)
        log(
            f"warm-up: {sum(1 for c in clients if stats.warm[c.idx] < 1)}/{len(clients)} subscribers got nothing"
        )
        return False

    def close_all(self) -> None:
        for c in self.clients:
            c.close()
        self.clients = []

    async def fanout(self, srv: ServerProc, n: int, messages: int, channel: str) -> dict[str, Any]:
        a = self.a
        res: dict[str, Any] = {}
        stats = Stats(n)
        pub = Publisher(self.host, self.port, self.token, channel, a.pub_conns)
        clients, fails, dt = await self.open_clients(n, channel, stats)
        res["connect_failures"] = fails
        res["connect_s"] = round(dt, 2)
        await pub.connect()
        res["warmup_ok"] = await self.warmup(pub, stats, clients)
        pids = srv.pids()
        if len(pids) > 1:
            owner = conn_owner(pids, self.port)
            per: dict[int, int] = {}
            for c in clients:
                per[owner.get(c.local_port)] = per.get(owner.get(c.local_port), 0) + 1
            res["subs_per_worker"] = sorted(v for k, v in per.items() if k is not None)

        stats.measuring = True
        pad = "x" * a.pad
        cpu0, ccpu0 = srv.cpu_s(), sum(os.times()[:2])
        t_start = monotonic()
        published = 0
        for i in range(messages):
            try:
                st, _ = await pub.publish(i, pad, timeout=a.publish_timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
                log(f"publish {i} failed: {e!r}; stopping the publisher")
                break
            if st // 100 != 2:
                log(f"publish {i} answered {st}; stopping the publisher")
                break
            published += 1
        t_pub_end = monotonic()
        expected = messages * len(clients)
        # drain: until everything arrived, bounded by a timeout and by a lack of progress
        t0 = last_change = monotonic()
        last_total = stats.total
        while stats.total < expected and monotonic() - t0 < a.drain_timeout:
            await asyncio.sleep(0.05)
            if stats.total != last_total:
                last_total, last_change = stats.total, monotonic()
            elif monotonic() - last_change > a.no_progress_timeout:
                break
        t_end = monotonic()
        cpu1, ccpu1 = srv.cpu_s(), sum(os.times()[:2])
        stats.measuring = False
        all_lat = array.array("d")
        for c in clients:
            all_lat.extend(stats.lat[c.idx])
        delivered = sum(stats.count[c.idx] for c in clients)
        wall = max(1e-9, (stats.last_recv or t_end) - t_start)
        res.update(
            {
                "subscribers": len(clients),
                "published": published,
                "expected": expected,
                "delivered": delivered,
                "losses": expected - delivered,
                "loss_pct": round(100.0 * (expected - delivered) / expected, 3)
                if expected
                else None,
                "dups": stats.dups,
                "reorders": stats.reorder,
                "events_per_s": round(delivered / wall, 1),
                "publish_rate": round(published / max(1e-9, t_pub_end - t_start), 1),
                "latency": lat_summary(all_lat),
                "server_cpu_pct": round(100 * (cpu1 - cpu0) / (t_end - t_start), 1),
                "driver_cpu_pct": round(100 * (ccpu1 - ccpu0) / (t_end - t_start), 1),
                "bad_frames": stats.bad,
                "error_frames": stats.errors,
            }
        )
        pub.close()
        self.close_all()
        return res

    async def idle(self, srv: ServerProc, n: int, channel: str) -> dict[str, Any]:
        res: dict[str, Any] = {}
        # warm-up: a few clients and one event, so that lazy imports and caches are not
        # charged to the idle connections
        wstats = Stats(10)
        pub = Publisher(self.host, self.port, self.token, channel, 1)
        warm, _, _ = await self.open_clients(10, channel, wstats)
        await pub.connect()
        await self.warmup(pub, wstats, warm)
        self.close_all()
        await asyncio.sleep(self.a.settle)
        res["rss_base_kib"] = r0 = srv.rss_kib()
        stats = Stats(n)
        clients, fails, dt = await self.open_clients(n, channel, stats)
        res["connect_failures"] = fails
        res["connect_s"] = round(dt, 2)
        await asyncio.sleep(self.a.settle)
        res["rss_connected_kib"] = r1 = srv.rss_kib()
        ok = len(clients) - sum(1 for c in clients if c.lost)
        res["open_connections"] = ok
        res["kib_per_conn"] = round((r1 - r0) / ok, 2) if ok else None
        # the connections must be live subscribers, not sockets the server forgot
        res["liveness_ok"] = await self.warmup(pub, stats, clients, timeout=20)
        pub.close()
        self.close_all()
        await asyncio.sleep(self.a.settle)
        return res


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    env["JWT_SECRET"] = a.jwt_secret
    srv = ServerProc(a.cmd, env, a.cwd, a.host, a.port, a.server_log)
    r = Runner(a)
    out: dict[str, Any] = {"transport": a.transport, "cmd": srv.cmd, "results": {}}
    plan = json.loads(a.plan)
    srv.start()
    try:
        out["startup_s"] = round(await srv.wait_healthy(a.startup_timeout), 2)
        out["server_pids"] = srv.pids()
        for step in plan:
            log(f"{step['id']}: {step}")
            ch = f"bench-{step['id'].lower()}"
            if step["scenario"] == "idle":
                coro = r.idle(srv, step["n"], ch)
            else:
                coro = r.fanout(srv, step["n"], step["messages"], ch)
            try:
                res = await asyncio.wait_for(coro, a.step_timeout)
                res["ok"] = True
            except Exception as e:
                res = {"ok": False, "error": repr(e)}
                log(f"{step['id']} failed: {e!r}")
                r.close_all()
            out["results"][step["id"]] = res
        out["ok"] = all(v.get("ok") for v in out["results"].values())
    except Exception as e:
        out["ok"] = False
        out["error"] = repr(e)
        log("run failed:", repr(e))
    finally:
        out["server_alive_at_end"] = srv.p.poll() is None
        out.update(srv.stop(a.stop_grace))
        r.close_all()
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cmd", required=True, help="server command; {host} and {port} are substituted")
    p.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the server (repeatable)"
    )
    p.add_argument("--cwd", default=None, help="working directory for the server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free loopback port")
    p.add_argument("--transport", choices=["sse", "ws", "sio"], default="sse")
    p.add_argument(
        "--plan",
        default='[{"id": "A1", "scenario": "fanout", "n": 500, "messages": 60}]',
        help='JSON list of {"id", "scenario": "fanout"|"idle", "n", "messages"}',
    )
    p.add_argument("--pad", type=int, default=64, help="bytes of padding in each payload")
    p.add_argument(
        "--pub-conns", type=int, default=1, help="publisher keep-alive connections (round-robin)"
    )
    p.add_argument("--jwt-secret", default="bench-secret-" + "0123456789abcdef" * 3)
    p.add_argument("--settle", type=float, default=0.5)
    p.add_argument("--publish-timeout", type=float, default=10.0)
    p.add_argument("--drain-timeout", type=float, default=30.0)
    p.add_argument("--no-progress-timeout", type=float, default=3.0)
    p.add_argument("--step-timeout", type=float, default=180.0)
    p.add_argument("--startup-timeout", type=float, default=30.0)
    p.add_argument("--stop-grace", type=float, default=10.0, help="seconds from SIGTERM to SIGKILL")
    p.add_argument("--server-log", default=os.devnull)
    return p.parse_args(argv)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    a = parse_args(argv)
    if not (a.host.startswith("127.") or a.host in ("localhost", "::1")):
        print("refusing: only loopback targets are allowed", file=sys.stderr)
        return 2
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server inherits it too
    if not a.port:
        a.port = free_port(a.host)
    if uvloop is not None:
        uvloop.install()

    def _bye(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _bye)
    signal.signal(signal.SIGINT, _bye)
    try:
        out = asyncio.run(main_async(a))
    finally:
        for srv in _SERVERS:  # never leave a server behind, whatever happened
            if srv.p is not None and srv.p.poll() is None:
                srv.stop(5)
    print(json.dumps(out))
    return 0 if out.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
