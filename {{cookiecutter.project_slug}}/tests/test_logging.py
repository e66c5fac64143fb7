"""Tokens never reach the logs, whichever logger writes the line."""

from __future__ import annotations

import logging

import httpx

from {{ cookiecutter.project_slug }}.logs import RedactTokens, redact

from conftest import ServerFactory, TokenFactory


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
        httpx.post(f"{server.url}{path}?token={token}", json={"data": 1})
    httpx.post(f"{server.url}/channels/room:1/events?token=not-a-real-token", json={"data": 1})
    server.signal(2)
    server.wait_exit(10)
    output = server.output()
    assert output.count("/events?token=[redacted]") == 3
    assert token not in output and "not-a-real-token" not in output
