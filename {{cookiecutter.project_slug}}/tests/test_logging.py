"""Tokens never reach the logs, whichever logger writes the line."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx2
import pytest

from {{ cookiecutter.project_slug }}.logs import RedactTokens, redact

from conftest import ServerFactory, TokenFactory
from servers import ServerProcess


def test_redact_hides_query_tokens_and_bare_jwts(make_token: TokenFactory) -> None:
    """`token=` values and JWT-shaped strings are replaced."""
    token = make_token()
    line = f"GET /channels/a/events?last_event_id=1&token={token}&x=1 and {token}"
    cleaned = redact(line)
    assert token not in cleaned
    assert "last_event_id=1" in cleaned and "&x=1" in cleaned


def test_filter_keeps_argument_shapes(make_token: TokenFactory) -> None:
    """Access-log records keep their argument tuple (uvicorn's formatter unpacks it)."""
    token = make_token()
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", f"/x?token={token}", "1.1", 200),
        None,
    )
    assert RedactTokens().filter(record)
    assert isinstance(record.args, tuple) and len(record.args) == 5
    assert token not in record.getMessage()


def test_query_token_never_appears_in_server_output(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """A real server's access log shows the request without the token."""
    server = start_server()
    token = make_token(publish=["room:*"])
    for path in ("/channels/room:1/events", "/channels/lobby/events"):
        httpx2.post(f"{server.url}{path}?token={token}", json={"data": 1})
    httpx2.post(f"{server.url}/channels/room:1/events?token=not-a-real-token", json={"data": 1})
    server.signal(2)
    server.wait_exit(10)
    output = server.output()
    assert output.count("/events?token=[redacted]") == 3
    assert token not in output and "not-a-real-token" not in output


@pytest.mark.parametrize(
    "name", ["token", "%74oken", "%74%6F%6B%65%6E", "t%6fken", "TOKEN", "%54oken"]
)
def test_redact_hides_a_percent_encoded_token_parameter(name: str) -> None:
    """`?%74oken=` is `?token=` once decoded: its value is redacted too."""
    secret = "opaque-token-value"
    cleaned = redact(f"GET /channels/a/events?x=1&{name}={secret}&last_event_id=2")
    assert secret not in cleaned
    assert "x=1" in cleaned and "&last_event_id=2" in cleaned
    assert redact("GET /x?mytoken=keep&tokens=keep") == "GET /x?mytoken=keep&tokens=keep"


def test_filter_redacts_a_logged_asgi_scope(make_token: TokenFactory) -> None:
    """A scope logged as one dict (uvicorn's trace level) loses its query token and bearer."""
    query_token, header_token = make_token(sub="q"), make_token(sub="h")
    scope = {
        "type": "http",
        "query_string": f"%74oken={query_token}".encode(),
        "headers": [(b"authorization", f"Bearer {header_token}".encode())],
    }
    record = logging.LogRecord(
        "uvicorn.asgi", 5, __file__, 1, "%s ASGI [%d] Started scope=%s", ("x", 1, scope), None
    )
    assert RedactTokens().filter(record)
    message = record.getMessage()
    assert query_token not in message and header_token not in message
    assert "ASGI [1] Started" in message


def test_no_token_reaches_the_log_at_uvicorn_trace_level(
    service_env: dict[str, str], tmp_path: Path, make_token: TokenFactory
) -> None:
    """At `--log-level trace` (every ASGI scope logged) no query or header token shows."""
    server = ServerProcess(service_env, tmp_path / "trace.log", extra_args=["--log-level", "trace"])
    try:
        server.wait_ready()
        plain, encoded, header = (make_token(sub=s, publish=["room:*"]) for s in "peh")
        url = f"{server.url}/channels/room:1/events"
        responses = [
            httpx2.post(f"{url}?token={plain}", json={"data": 1}, timeout=5),
            httpx2.post(f"{url}?%74oken={encoded}", json={"data": 1}, timeout=5),
            httpx2.post(url, json={"data": 1}, headers={"Authorization": f"Bearer {header}"}),
        ]
        assert [r.status_code for r in responses] == [202, 202, 202]
        server.signal(2)
        server.wait_exit(10)
        output = server.output()
    finally:
        server.stop()
    assert "ASGI [" in output, "uvicorn logged no trace lines: the test would prove nothing"
    assert "[redacted]" in output
    for token in (plain, encoded, header):
        assert token not in output
        assert token.split(".")[1] not in output  # not even the claims part
