"""The rendered service's `/demo` page, in headless Chromium against the real service.

Two pages on one channel, as two people would use it: one mints a token and
publishes, the other pastes a token and sees every event with its id; then the
second drops its connection, the first publishes meanwhile, and the second
resumes with nothing missing and nothing twice. A screenshot of the second page
is kept in `test-artifacts/` (git-ignored) to look at.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.chromium import playwright_api
from browser.harness import Service, mint
from rendering import COMBINATIONS, TEMPLATE, combo_id
from test_browser import WAIT_MS, clients_of

CHANNEL = "demo:browser"
ARTIFACTS = TEMPLATE / "test-artifacts"
# Every transport choice once, over the memory broadcaster (the page doesn't see
# the broadcaster; the rendered suites cover Redis).
COMBOS = [combo for combo in COMBINATIONS if combo[1] == "memory"]
CASES = [
    pytest.param(
        combo,
        kind,
        id=f"{combo_id(combo)}-{kind}",
        marks=pytest.mark.xdist_group(combo_id(combo)),
    )
    for combo in COMBOS
    for kind in clients_of(combo[0])
]


class DemoPage:
    """One browser tab on `/demo`, driven through its controls."""

    def __init__(self, page: Any, service: Service) -> None:
        self.page = page
        self.service = service
        self.timeout_error: type[Exception] = playwright_api().TimeoutError

    def open(self, kind: str) -> None:
        """Load the page and pick the transport and channel."""
        self.page.goto(f"{self.service.url}/demo")
        self.wait("document.body.dataset.ready === 'true'", "the page to load")
        self.page.select_option("#transport", kind)
        self.page.fill("#channel", CHANNEL)

    def connect(self) -> None:
        """Press Connect; wait until the connection is open and subscribed."""
        self.page.click("#connect")
        self.wait_state("open")
        self.wait(
            "document.getElementById('subscribed').dataset.subscribed === 'true'",
            "the subscription",
        )

    def publish(self, n: int) -> str:
        """Publish `{"n": n}` from the page's box; the id the service answered."""
        count = int(self.page.get_attribute("#publish-result", "data-count") or 0)
        self.page.fill("#data", json.dumps({"n": n}))
        self.page.click("#publish")
        self.wait(
            f"document.getElementById('publish-result').dataset.count === '{count + 1}'",
            f"the publish of {n} to be answered",
        )
        return str(self.page.get_attribute("#publish-result", "data-id"))

    def events(self) -> list[dict[str, Any]]:
        """The rows of the live events table: id and data."""
        rows: list[dict[str, Any]] = self.page.eval_on_selector_all(
            "#events tr",
            "rows => rows.map((r) => ({ id: r.dataset.id, data: JSON.parse(r.dataset.json) }))",
        )
        return rows

    def wait_events(self, count: int) -> None:
        """Wait until the table holds `count` events."""
        self.wait(f"document.querySelectorAll('#events tr').length >= {count}", f"{count} events")

    def wait_state(self, state: str) -> None:
        """Wait until the page shows connection state `state`."""
        self.wait(f"document.getElementById('state').dataset.state === '{state}'", f"state {state}")

    def text(self, selector: str) -> str:
        """The text of the element `selector`."""
        return str(self.page.text_content(selector))

    def wait(self, expression: str, what: str) -> None:
        """Wait until `expression` holds in the page; on timeout show the page's log and the service's."""
        try:
            self.page.wait_for_function(expression, timeout=WAIT_MS, polling=50)
        except self.timeout_error as exc:
            pytest.fail(
                f"timed out waiting for {what}: {exc}\npage log:\n{self.text('#log')}\n"
                f"service:\n{self.service.output()[-3000:]}"
            )


@pytest.fixture
def demo_service(
    combo: tuple[str, str],
    rendered: Callable[[str, str], Path],
    built_client: Callable[[tuple[str, str]], Path],
    tmp_path: Path,
) -> Iterator[Service]:
    """The rendered service with `DEMO_PAGE=true` and its client built."""
    built_client(combo)
    service = Service(rendered(*combo), tmp_path, {"DEMO_PAGE": "true"})
    try:
        service.start()
        yield service
    finally:
        service.kill()


@pytest.fixture
def two_pages(chromium: Any, demo_service: Service) -> Iterator[tuple[DemoPage, DemoPage]]:
    """Two demo pages, each in its own browser context (two people)."""
    contexts = [chromium.new_context(viewport={"width": 1200, "height": 900}) for _ in range(2)]
    try:
        yield (
            DemoPage(contexts[0].new_page(), demo_service),
            DemoPage(contexts[1].new_page(), demo_service),
        )
    finally:
        for context in contexts:
            context.close()


@pytest.mark.parametrize(("combo", "kind"), CASES)
def test_demo_page_shows_live_events_and_resumes_after_a_drop(
    combo: tuple[str, str], kind: str, two_pages: tuple[DemoPage, DemoPage]
) -> None:
    """One page publishes, the other sees each event with its id; after a drop it resumes with no gap."""
    publisher, watcher = two_pages
    publisher.open(kind)
    publisher.page.click("#mint")
    publisher.wait("document.getElementById('token').value.length > 0", "the minted token")
    publisher.connect()
    watcher.open(kind)
    watcher.page.fill("#token", mint(channels="demo:*"))
    watcher.connect()

    ids = [publisher.publish(n) for n in (1, 2, 3)]
    watcher.wait_events(3)
    assert watcher.events() == [
        {"id": i, "data": {"n": n}} for i, n in zip(ids, (1, 2, 3), strict=True)
    ]
    assert watcher.text("#last-id") == ids[-1]

    # Held down until told otherwise, so that the next events are certainly missed live.
    watcher.page.fill("#hold", "120")
    watcher.page.click("#drop")
    watcher.wait_state("reconnecting")
    ids += [publisher.publish(n) for n in (4, 5, 6)]
    publisher.wait_events(6)
    assert len(watcher.events()) == 3, "the dropped page still received events"
    watcher.page.click("#drop")  # now "Reconnect now"
    watcher.wait_state("open")
    watcher.wait_events(6)
    events = watcher.events()
    assert events == [{"id": i, "data": {"n": n}} for i, n in zip(ids, range(1, 7), strict=True)]
    assert len(set(ids)) == 6
    assert watcher.text("#reconnects") == "1"
    assert f"resuming after id {ids[2]}" in watcher.text("#log")
    assert "resync" not in watcher.text("#log")
    assert "fatal" not in watcher.text("#log")

    ids.append(publisher.publish(7))
    watcher.wait_events(7)
    assert watcher.events()[-1] == {"id": ids[-1], "data": {"n": 7}}
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"demo-{combo_id(combo)}-{kind}.png"
    watcher.page.screenshot(path=str(shot), full_page=True)


@pytest.mark.parametrize(
    ("combo", "kind"),
    [
        pytest.param(
            combo,
            clients_of(combo[0])[0],
            id=combo_id(combo),
            marks=pytest.mark.xdist_group(combo_id(combo)),
        )
        for combo in COMBOS
    ],
)
def test_demo_page_offers_only_the_rendered_transports_and_stops_on_a_bad_token(
    combo: tuple[str, str], kind: str, two_pages: tuple[DemoPage, DemoPage]
) -> None:
    """The transport picker lists what was rendered; a bad token is a fatal error on the page."""
    page, _ = two_pages
    page.open(kind)
    options = page.page.eval_on_selector_all("#transport option", "os => os.map((o) => o.value)")
    assert options == clients_of(combo[0])
    page.page.fill("#token", "not-a-jwt")
    page.page.click("#connect")
    page.wait("document.getElementById('log').textContent.includes('fatal')", "the fatal error")
    assert page.text("#state") == "closed"
    assert "invalid token" in page.text("#log")


@pytest.mark.parametrize("combo", COMBINATIONS, ids=combo_id)
def test_readme_quickstart_ends_at_the_demo_page(
    combo: tuple[str, str], rendered: Callable[[str, str], Path]
) -> None:
    """The rendered README's Quickstart ends by sending the reader to the demo page."""
    readme = (rendered(*combo) / "README.md").read_text(encoding="utf-8")
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert quickstart.rstrip().endswith("open http://127.0.0.1:8000/demo")
    makefile = (rendered(*combo) / "Makefile").read_text(encoding="utf-8")
    assert "DEMO_PAGE=true" in makefile.split("\ndev:", 1)[1].split("\n\n", 1)[0]
