"""`LOG_FORMAT=json`: every line a real server writes is one JSON object, tokens redacted."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest

from {{ cookiecutter.project_slug }}.jsonlogs import JsonFormatter
from {{ cookiecutter.project_slug }}.settings import SettingsError, load_settings

from conftest import TEST_SECRET, ServerFactory, TokenFactory
from servers import PACKAGE, PROJECT_ROOT, ServerProcess, free_port

REQUIRED = ("ts", "level", "logger", "message")


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of `output` as JSON; fails naming the first line that isn't."""
    entries = []
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert isinstance(entry, dict), line
        assert all(key in entry for key in REQUIRED), line
        entries.append(entry)
    return entries


def test_formatter_writes_one_line_with_context_and_no_token(make_token: TokenFactory) -> None:
    """Fields from `extra=` and the traceback are kept; a token inside them is redacted."""
    token = make_token()
    try:
        raise ValueError(f"bad token {token}")
    except ValueError:
        record = logging.getLogger("app.jobs").makeRecord(
            "app.jobs",
            logging.ERROR,
            __file__,
            1,
            "job %s failed",
            ("nightly",),
            sys.exc_info(),
            extra={"attempt": 3, "url": f"/x?token={token}"},
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line and token not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "app.jobs"
    assert entry["message"] == "job nightly failed"
    assert entry["ts"].endswith("+00:00")
    assert entry["attempt"] == 3 and entry["url"] == "/x?token=[redacted]"
    assert "ValueError: bad token [redacted]" in entry["exception"]


def test_log_format_is_text_or_json() -> None:
    """Any other LOG_FORMAT stops startup, naming the variable."""
    assert load_settings(_env_file=None, jwt_secret=TEST_SECRET, log_format="JSON").log_format == (
        "json"
    )
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        load_settings(_env_file=None, jwt_secret=TEST_SECRET, log_format="logfmt")


def test_every_line_of_a_real_server_is_json_without_tokens(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """Startup, access lines (a token in the query string included), warnings, shutdown."""
    server = start_server(LOG_FORMAT="json")
    token = make_token(publish=[])
    with httpx2.Client(base_url=server.url, timeout=5) as http:
        assert http.get("/healthz").status_code == 200
        refused = http.post("/channels/room:1/events", params={"token": token}, json={"data": 1})
        assert refused.status_code == 403
        assert http.post("/channels/room:1/events", json={"data": 1}).status_code == 401
    server.signal(signal.SIGTERM)
    server.wait_exit(timeout=15)
    output = server.output()
    assert token not in output
    entries = json_lines(output)
    loggers = {entry["logger"] for entry in entries}
    assert {"uvicorn.error", "uvicorn.access"} <= loggers
    messages = [entry["message"] for entry in entries]
    assert any("Application startup complete" in m for m in messages)
    assert any("Finished server process" in m for m in messages)
    access = [entry for entry in entries if entry["logger"] == "uvicorn.access"]
    assert {(a["method"], a["status"]) for a in access} >= {("GET", 200), ("POST", 403)}
    assert any(a["path"] == "/channels/room:1/events?token=[redacted]" for a in access)


def test_with_workers_the_log_config_makes_the_supervisor_json_too(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    """`--workers 2 --log-config logging.json`: the parent process's lines are JSON as well."""
    server = ServerProcess(
        {**service_env, "LOG_FORMAT": "json"},
        tmp_path / "server.log",
        workers=2,
        extra_args=("--log-config", str(PROJECT_ROOT / "logging.json")),
    )
    try:
        server.wait_ready()
        assert httpx2.get(f"{server.url}/healthz", timeout=5).status_code == 200
        server.signal(signal.SIGTERM)
        server.wait_exit(timeout=20)
        output = server.output()
    finally:
        server.stop()
    messages = [entry["message"] for entry in json_lines(output)]
    assert any("Started parent process" in m for m in messages)
    assert sum("Application startup complete" in m for m in messages) == 2
    assert any("GET /healthz" in m for m in messages)


def test_a_failed_start_is_a_json_line_too() -> None:
    """Invalid settings: the one line explaining why is JSON as well."""
    env = {
        **os.environ,
        "LOG_FORMAT": "json",
        "JWT_SECRET": "short",
        "PYTHONPATH": str(PROJECT_ROOT / "src"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", f"{PACKAGE}.main:app", "--port", str(free_port())],
        env=env,
        cwd=PROJECT_ROOT / "tests",  # not the project: its .env must not count
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    entries = json_lines(result.stderr)
    critical = [e["message"] for e in entries if e["level"] == "CRITICAL"]
    assert any("JWT_SECRET must be at least" in m for m in critical), result.stderr
