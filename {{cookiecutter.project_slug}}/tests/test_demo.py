"""`DEMO_PAGE`: `/demo` and its files exist only when it is on; tokens are minted only locally.

The page itself runs in a browser: the template's own suite drives it in Chromium.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.project_slug }} import demo, transports
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings

LOCAL = ("127.0.0.1", 50000)
DEMO_PATHS = ["/demo", "/demo/static/demo.js", "/demo/static/demo.css", "/demo/client/sse.js"]


@pytest.fixture
def demo_app(settings_factory: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    """`demo_app(client=...)`: a client of an app with `DEMO_PAGE=true`, from that address."""
    with contextlib.ExitStack() as stack:

        def open_app(client: tuple[str, int] = LOCAL) -> TestClient:
            app = create_app(settings_factory(demo_page=True))
            return stack.enter_context(TestClient(app, client=client))

        yield open_app


@pytest.fixture
def client_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `client/dist` with one module per transport, as `npm run build` leaves it."""
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in transports.NAMES:
        (dist / f"{name}.js").write_text(f"export const name = {json.dumps(name)};\n")
    (dist / "lifecycle.d.ts").write_text("export {};\n")
    monkeypatch.setattr(demo, "CLIENT_DIST", dist)
    return dist


def page_config(html: str) -> dict[str, Any]:
    """The settings the page was served with."""
    match = re.search(r'<script id="demo-config" type="application/json">(.*?)</script>', html)
    assert match is not None, html
    config: dict[str, Any] = json.loads(match.group(1))
    return config


def test_demo_is_off_by_default(settings: Settings) -> None:
    """`DEMO_PAGE` defaults to false."""
    assert settings.demo_page is False


@pytest.mark.parametrize("path", DEMO_PATHS)
def test_demo_paths_are_404_when_off(client: TestClient, path: str) -> None:
    """Without `DEMO_PAGE=true` there is no page, no file and no token minting."""
    assert client.get(path).status_code == 404
    assert client.post("/demo/token", json={"channel": "demo:x"}).status_code == 404


def test_demo_page_offers_the_rendered_transports(
    demo_app: Callable[..., TestClient], client_dist: Path, settings: Settings
) -> None:
    """The page is told exactly this service's transports, heartbeat and that the client is built."""
    response = demo_app().get("/demo")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    config = page_config(response.text)
    assert config["transports"] == list(transports.NAMES)
    assert config["heartbeatInterval"] == settings.heartbeat_interval
    assert config["clientBuilt"] is True
    assert config["canMint"] is True
    assert "/demo/static/demo.js" in response.text


def test_demo_page_says_when_the_client_is_not_built(
    demo_app: Callable[..., TestClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without `client/dist` the page says so (it can't connect), and client files are 404."""
    monkeypatch.setattr(demo, "CLIENT_DIST", tmp_path / "missing")
    client = demo_app()
    assert page_config(client.get("/demo").text)["clientBuilt"] is False
    response = client.get(f"/demo/client/{transports.NAMES[0]}.js")
    assert response.status_code == 404
    assert "npm run build" in response.json()["detail"]


def test_demo_serves_its_own_files_and_the_built_client_only(
    demo_app: Callable[..., TestClient], client_dist: Path
) -> None:
    """Page script and style, and `.js` modules of client/dist; nothing else."""
    client = demo_app()
    script = client.get("/demo/static/demo.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert client.get("/demo/static/demo.css").headers["content-type"].startswith("text/css")
    assert client.get("/demo/static/demo.html").status_code == 404
    for name in ("sse", "websocket"):
        expected = 200 if name in transports.NAMES else 404
        assert client.get(f"/demo/static/demo-{name}.js").status_code == expected
    for name in transports.NAMES:
        module = client.get(f"/demo/client/{name}.js")
        assert module.status_code == 200
        assert module.text == (client_dist / f"{name}.js").read_text()
    assert client.get("/demo/client/lifecycle.d.ts").status_code == 404
    assert client.get("/demo/client/..%2F..%2Fdemo.py").status_code == 404


def test_minted_token_may_use_exactly_its_channel(demo_app: Callable[..., TestClient]) -> None:
    """A local browser gets a token that subscribes and publishes to its channel and no other."""
    client = demo_app()
    minted = client.post("/demo/token", json={"channel": "demo:lobby"})
    assert minted.status_code == 200
    body = minted.json()
    assert body["sub"] == "demo"
    assert body["expires_in"] == 3600
    headers = {"Authorization": f"Bearer {body['token']}"}
    event = {"event": "chat.message", "data": {"text": "hi"}}
    accepted = client.post("/channels/demo:lobby/events", json=event, headers=headers)
    assert accepted.status_code == 202
    refused = client.post("/channels/demo:other/events", json=event, headers=headers)
    assert refused.status_code == 403


def test_minting_is_refused_to_a_remote_browser(demo_app: Callable[..., TestClient]) -> None:
    """From another machine: 403 with the reason, and the page doesn't offer minting."""
    client = demo_app(client=("203.0.113.7", 50000))
    response = client.post("/demo/token", json={"channel": "demo:lobby"})
    assert response.status_code == 403
    assert "paste a token" in response.json()["detail"]
    assert page_config(client.get("/demo").text)["canMint"] is False


@pytest.mark.parametrize(
    ("body", "status"),
    [({"channel": "bad channel"}, 400), ({"channel": "demo:*"}, 400), ({}, 422), ([], 422)],
)
def test_minting_a_bad_request_is_refused(
    demo_app: Callable[..., TestClient], body: object, status: int
) -> None:
    """A bad channel (globs included) is 400, a malformed body 422; minting works after."""
    client = demo_app()
    assert client.post("/demo/token", json=body).status_code == status
    assert client.post("/demo/token", json={"channel": "demo:ok"}).status_code == 200
