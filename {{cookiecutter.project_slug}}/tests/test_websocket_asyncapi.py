"""`GET /asyncapi.json`: an AsyncAPI 3 document equal to the frame models, and valid.

Its validity is checked by the AsyncAPI project's own parser (`@asyncapi/parser`
from npm), installed in a scratch folder: without Node it is skipped, except
under `CI=true`, where a missing tool fails.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from pydantic.json_schema import models_json_schema

from {{ cookiecutter.project_slug }}.transports import ws_connection
from {{ cookiecutter.project_slug }}.transports.ws_asyncapi import (
    CLIENT_FRAMES,
    CLOSE_CODES,
    ERROR_CODES,
    REPLIES,
    SERVER_FRAMES,
    frame_type,
)
from {{ cookiecutter.project_slug }}.transports.ws_frames import KNOWN_TYPES, ErrorCode
from {{ cookiecutter.project_slug }}.transports.ws_server_frames import AnyServerFrame

from conftest import SharedServerFactory, TokenFactory
from servers import ServerProcess
from ws_client import open_ws, publish_http, recv_frame, request

PARSER_PACKAGE = "@asyncapi/parser@3"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Prints every diagnostic, then whether the document parsed with no error (severity 0).
VALIDATE_JS = """
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";
const { document, diagnostics } = await new Parser().parse(readFileSync(process.argv[2], "utf8"));
const errors = diagnostics.filter((d) => d.severity === 0);
console.log(JSON.stringify({
  valid: document !== undefined && errors.length === 0,
  errors: errors.map((d) => ({ message: d.message, path: d.path })),
  operations: document ? document.operations().all().map((o) => o.id()) : [],
  messages: document ? document.allMessages().all().map((m) => m.name()) : [],
}));
"""


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    """`/asyncapi.json` as the service serves it."""
    response = client.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def test_document_is_asyncapi_3_for_ws(document: dict[str, Any]) -> None:
    """An AsyncAPI 3 document with one channel at `/ws`, served from where it was asked."""
    assert document["asyncapi"].startswith("3.")
    assert document["channels"]["ws"]["address"] == "/ws"
    assert document["servers"]["service"]["host"] == "testserver"
    assert document["servers"]["service"]["protocol"] == "ws"


def test_schemas_equal_the_frame_models(document: dict[str, Any]) -> None:
    """Every message's payload is its model's JSON schema, and every frame model has a message."""
    models = [(m, "validation") for m in CLIENT_FRAMES]
    models += [(m, "serialization") for m in SERVER_FRAMES]
    _, expected = models_json_schema(models, ref_template="#/components/schemas/{model}")
    assert document["components"]["schemas"] == expected["$defs"]
    messages = document["components"]["messages"]
    for model in CLIENT_FRAMES + SERVER_FRAMES:
        payload = messages[frame_type(model)]["payload"]
        assert payload == {"$ref": f"#/components/schemas/{model.__name__}"}
    assert set(messages) == {frame_type(m) for m in CLIENT_FRAMES + SERVER_FRAMES}


def test_every_client_frame_the_server_parses_is_described(document: dict[str, Any]) -> None:
    """The client frames are exactly those the parser knows, each with its replies and `error`."""
    assert {frame_type(m) for m in CLIENT_FRAMES} == set(KNOWN_TYPES)
    assert set(REPLIES) == set(KNOWN_TYPES)
    for kind in KNOWN_TYPES:
        operation = document["operations"][f"receive_{kind}"]
        assert operation["action"] == "receive"
        replies = [m["$ref"].rsplit("/", 1)[1] for m in operation["reply"]["messages"]]
        assert replies == [frame_type(r) for r in REPLIES[kind]] + ["error"]
    for kind in ("message", "ping"):
        assert document["operations"][f"send_{kind}"]["action"] == "send"


def test_error_codes_and_close_codes_are_all_described(document: dict[str, Any]) -> None:
    """Every error code, and every close code the connection module can send, is documented."""
    assert list(ERROR_CODES) == list(get_args(ErrorCode))
    error_schema = document["components"]["schemas"]["Error"]["properties"]["code"]
    assert error_schema["enum"] == list(get_args(ErrorCode))
    description = document["components"]["messages"]["error"]["description"]
    assert all(f"`{code}`" in description for code in ERROR_CODES)
    # The connection module names each close code it sends (RFC 6455 assigns 1001-1014).
    named = {
        value
        for name, value in inspect.getmembers(ws_connection)
        if name.isupper() and isinstance(value, int) and 1001 <= value <= 1014
    }
    assert named == set(CLOSE_CODES)
    assert set(ws_connection.CLOSE_CODES.values()) <= set(CLOSE_CODES)
    listed = document["channels"]["ws"]["x-close-codes"]
    assert [entry["code"] for entry in listed] == list(CLOSE_CODES)


@pytest.fixture(scope="module")
def server(shared_server: SharedServerFactory) -> ServerProcess:
    """A real server with fast pings, so that a `ping` frame is seen too."""
    return shared_server(HEARTBEAT_INTERVAL="0.3")


async def test_every_frame_a_real_connection_sends_fits_the_models(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """Frames of every server type, from a real connection, validate against the documented models."""
    adapter: TypeAdapter[AnyServerFrame] = TypeAdapter(AnyServerFrame)
    channel = "room:asyncapi"
    seen: list[dict[str, Any]] = []
    async with await open_ws(server, make_token()) as ws:
        seen.append(await request(ws, {"type": "subscribe", "channel": channel}))
        await publish_http(server, make_token(), channel, {"n": 1})
        seen.append(await recv_frame(ws))
        seen.append(await request(ws, {"type": "publish", "channel": "room:other", "data": None}))
        seen.append(await request(ws, {"type": "refresh", "token": make_token()}))
        seen.append(await request(ws, {"type": "unsubscribe", "channel": channel}))
        seen.append(await request(ws, {"type": "nonsense"}))
        seen.append(await recv_frame(ws, pings=True))
    kinds = [frame["type"] for frame in seen]
    assert sorted(kinds) == sorted(frame_type(m) for m in SERVER_FRAMES), kinds
    for frame in seen:
        adapter.validate_python(frame)


def require_tool(name: str) -> str:
    """The path of `name`; skips without it, but fails under CI=true."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed (required under CI=true)")
        pytest.skip(f"{name} is not installed")
    return path


Verdict = dict[str, Any]


@pytest.fixture(scope="module")
def parse_with_asyncapi(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[dict[str, Any]], Verdict]:
    """`parse(document)`: what `@asyncapi/parser`, installed in a scratch folder, makes of it."""
    node = require_tool("node")
    npm = require_tool("npm")
    folder = tmp_path_factory.mktemp("asyncapi-parser")
    (folder / "package.json").write_text('{"private": true, "type": "module"}')
    installed = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", PARSER_PACKAGE],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    (folder / "validate.mjs").write_text(VALIDATE_JS)

    def parse(document: dict[str, Any]) -> Verdict:
        path = folder / "document.json"
        path.write_text(json.dumps(document))
        result = subprocess.run(
            [node, "validate.mjs", str(path)],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        verdict: Verdict = json.loads(result.stdout)
        return verdict

    return parse


def test_asyncapi_parser_accepts_the_document(
    parse_with_asyncapi: Callable[[dict[str, Any]], Verdict], document: dict[str, Any]
) -> None:
    """The AsyncAPI project's parser finds no error and sees every operation and message."""
    verdict = parse_with_asyncapi(document)
    assert verdict["valid"] is True, verdict["errors"]
    assert set(verdict["operations"]) == set(document["operations"])
    assert set(verdict["messages"]) == set(document["components"]["messages"])


def test_asyncapi_parser_rejects_a_broken_document(
    parse_with_asyncapi: Callable[[dict[str, Any]], Verdict], document: dict[str, Any]
) -> None:
    """The same check fails on a document with a wrong `action`: it is a real validation."""
    broken = json.loads(json.dumps(document))
    broken["operations"]["receive_subscribe"]["action"] = "listen"
    verdict = parse_with_asyncapi(broken)
    assert verdict["valid"] is False
    assert any("action" in error["message"] for error in verdict["errors"])
