"""`GET /demo` (when `DEMO_PAGE=true`): a page to watch events flow, for development.

The page runs the project's own TypeScript client(s), as `npm run build` emits
them into `client/dist/`, served under `/demo/client/`. It can mint a token for
the channel it shows, but only for a browser on this machine and only when the
service holds the signing secret (HS*): anyone who can reach a minting page can
publish, so `DEMO_PAGE` stays off outside development.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel

from . import PROJECT_NAME, transports
from .auth import mint_token
from .service import Service, ServiceDep, check_channel

STATIC = Path(__file__).resolve().parent / "static"
# src/<package>/demo.py -> the project's client/dist.
CLIENT_DIST = Path(__file__).resolve().parents[2] / "client" / "dist"
# What the page may load from client/dist: the emitted modules and their source maps.
CLIENT_FILE = re.compile(r"[a-z0-9-]+\.js(\.map)?")
# The page, and one module per transport this service has (`demo-<transport>.js`).
PAGE_FILES = {
    "demo.js": "text/javascript",
    "demo.css": "text/css",
    **{f"demo-{name}.js": "text/javascript" for name in transports.NAMES},
}
LOOPBACK = {"127.0.0.1", "::1"}
DEMO_TOKEN_TTL = 3600
CONFIG_MARK = "<!--demo-config-->"

router = APIRouter(prefix="/demo", include_in_schema=False)


class MintRequest(BaseModel):
    """The channel the page wants a token for."""

    channel: str


class Minted(BaseModel):
    """A development token that may subscribe and publish to one channel."""

    token: str
    sub: str
    expires_in: int


def can_mint(service: Service, request: Request) -> bool:
    """Whether this request may get a token minted: HS* and a browser on this machine."""
    client = request.client
    return service.settings.signs_tokens and client is not None and client.host in LOOPBACK


@router.get("", response_class=HTMLResponse)
async def demo_page(request: Request, service: ServiceDep) -> HTMLResponse:
    """The demo page, told which transports this service has."""
    config = {
        "title": PROJECT_NAME,
        "transports": list(transports.NAMES),
        "heartbeatInterval": service.settings.heartbeat_interval,
        "canMint": can_mint(service, request),
        "mintCommand": f"python -m {__package__} token --sub you "
        "--subscribe 'demo:*' --publish 'demo:*'",
        "clientBuilt": all((CLIENT_DIST / f"{name}.js").is_file() for name in transports.NAMES),
    }
    # `<` escaped, so that no value can end the script element early.
    script = json.dumps(config).replace("<", "\\u003c")
    page = (STATIC / "demo.html").read_text(encoding="utf-8")
    element = f'<script id="demo-config" type="application/json">{script}</script>'
    return HTMLResponse(page.replace(CONFIG_MARK, element), headers={"Cache-Control": "no-store"})


@router.get("/static/{name}")
async def page_file(name: str) -> FileResponse:
    """The page's own script and stylesheet."""
    if name not in PAGE_FILES:
        raise HTTPException(404, "not found")
    return FileResponse(STATIC / name, media_type=PAGE_FILES[name])


@router.get("/client/{name}")
async def client_file(name: str) -> FileResponse:
    """A module of the built TypeScript client (`client/dist/`)."""
    path = CLIENT_DIST / name
    if not CLIENT_FILE.fullmatch(name) or not path.is_file():
        raise HTTPException(404, "not found: build the client with `npm run build` in client/")
    media_type = "application/json" if name.endswith(".map") else "text/javascript"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.post("/token")
async def mint(body: MintRequest, request: Request, service: ServiceDep) -> Minted:
    """A token for `channel` (subscribe and publish), for a browser on this machine."""
    check_channel(body.channel)
    if not can_mint(service, request):
        raise HTTPException(
            403,
            "the demo mints tokens only for a browser on this machine and with JWT_SECRET "
            "(HS*); paste a token instead",
        )
    sub = "demo"
    token = mint_token(
        service.settings,
        sub,
        subscribe=(body.channel,),
        publish=(body.channel,),
        ttl=DEMO_TOKEN_TTL,
    )
    return Minted(token=token, sub=sub, expires_in=DEMO_TOKEN_TTL)
