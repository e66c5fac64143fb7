"""Hostile publishes and risky settings get a clear answer; everyone else is unaffected.

A body that can't be re-encoded as valid JSON for subscribers (a number beyond
a double, a lone surrogate) is refused with 422; a permission pattern built to
make a regex backtrack is matched in bounded time; tokens living longer than
`JWT_MAX_TTL` are refused; a wide-open configuration is warned about at startup.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.project_slug }}.events import decode_json, encode_json
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.permissions import glob_match
from {{ cookiecutter.project_slug }}.settings import Settings

from conftest import TokenFactory

CHANNEL = "room:1"

# Each of these reached subscribers as `Infinity` or as invalid UTF-8 before.
UNENCODABLE_BODIES = [
    pytest.param(b'{"data": 1e999}', id="1e999"),
    pytest.param(b'{"data": -1e999}', id="-1e999"),
    pytest.param(b'{"data": [1, {"deep": [2e308]}]}', id="nested-overflow"),
    pytest.param(b'{"data": Infinity}', id="Infinity"),
    pytest.param(b'{"data": NaN}', id="NaN"),
    pytest.param(b'{"data": "\\ud800"}', id="lone-high-surrogate"),
    pytest.param(b'{"data": {"\\udc00": 1}}', id="lone-surrogate-in-a-key"),
    pytest.param(b'{"event": "\\ud800", "data": 1}', id="lone-surrogate-event"),
]


def post_raw(client: TestClient, token: str, body: bytes) -> tuple[int, dict[str, object]]:
    """POST `body` as it is; the status and JSON answer."""
    response = client.post(
        f"/channels/{CHANNEL}/events",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    return response.status_code, response.json()


@pytest.mark.parametrize("body", UNENCODABLE_BODIES)
def test_a_publish_with_no_valid_json_form_is_refused_with_422(
    client: TestClient, make_token: TokenFactory, body: bytes
) -> None:
    """422 for non-finite numbers and lone surrogates; the next publish is accepted."""
    token = make_token()
    status, answer = post_raw(client, token, body)
    assert status == 422, answer
    assert isinstance(answer["detail"], str) and answer["detail"]
    status, answer = post_raw(client, token, b'{"data": {"ok": 1.5e308}}')
    assert status == 202, answer
    assert client.get("/healthz").json() == {"status": "ok"}


def test_a_valid_surrogate_pair_is_accepted(client: TestClient, make_token: TokenFactory) -> None:
    """An escaped pair (an emoji) is one character, not a lone surrogate: 202."""
    status, answer = post_raw(client, make_token(), b'{"data": "\\ud83d\\ude00"}')
    assert status == 202, answer


@pytest.mark.parametrize(
    "value", [float("inf"), float("-inf"), float("nan"), {"x": [float("inf")]}, "\ud800"]
)
def test_the_encoder_cannot_emit_invalid_json(value: object) -> None:
    """`encode_json` raises instead of writing `Infinity`, `NaN` or a lone surrogate."""
    with pytest.raises(ValueError, match=r"lone surrogate|Out of range float"):
        encode_json(value)


@pytest.mark.parametrize("text", ["1e999", "[-1e999]", '"\\udfff"', '{"a": "x\\ud800y"}'])
def test_the_decoder_refuses_what_the_encoder_cannot_write(text: str) -> None:
    """Whatever `decode_json` accepts, `encode_json` can write back."""
    with pytest.raises(ValueError, match=r"out of range|lone surrogate"):
        decode_json(text)
    with pytest.raises(ValueError, match=r"out of range|lone surrogate"):
        decode_json(text.encode())


# Patterns that take a backtracking regex exponential time on a 128-character name.
ADVERSARIAL_PATTERNS = [
    "a*" * 6 + "b",
    "*a" * 12 + "*b",
    "a*" * 64 + "b",
    "*" * 200 + "b",
    "a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*",
]
LONG_NAME = "a" * 128
# A hang guard, not a performance claim: a backtracking matcher takes minutes here.
BUDGET_SECONDS = 10


def test_adversarial_glob_patterns_finish_within_a_budget() -> None:
    """Matching every adversarial pattern against a 128-character name finishes at once."""

    def match_all() -> list[bool]:
        return [
            glob_match(pattern, name)
            for pattern in ADVERSARIAL_PATTERNS
            for name in (LONG_NAME, LONG_NAME[:-1] + "b", "b" * 128)
        ]

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        results = pool.submit(match_all).result(timeout=BUDGET_SECONDS)
    by_pattern = [results[i : i + 3] for i in range(0, len(results), 3)]
    assert by_pattern == [
        [False, True, False],
        [False, True, False],
        [False, True, False],
        [False, True, True],
        [True, True, False],
    ]


def test_an_adversarial_claim_does_not_freeze_the_service(
    client: TestClient, make_token: TokenFactory
) -> None:
    """A token whose patterns would make a regex backtrack is answered 403 at once."""
    # Every pattern that needs a `b` the channel doesn't have.
    token = make_token(publish=ADVERSARIAL_PATTERNS[:4])
    done = threading.Event()
    statuses: list[int] = []

    def attempt() -> None:
        response = client.post(
            f"/channels/{LONG_NAME}/events",
            json={"data": 1},
            headers={"Authorization": f"Bearer {token}"},
        )
        statuses.append(response.status_code)
        done.set()

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    assert done.wait(BUDGET_SECONDS), "matching the claim's patterns did not finish"
    assert statuses == [403]
    assert client.get("/healthz").json() == {"status": "ok"}


def _publish_status(client: TestClient, token: str) -> tuple[int, object]:
    response = client.post(
        f"/channels/{CHANNEL}/events",
        json={"data": 1},
        headers={"Authorization": f"Bearer {token}"},
    )
    return response.status_code, response.json()


def test_jwt_max_ttl_refuses_tokens_that_live_longer(
    settings_factory: Callable[..., Settings], make_token: TokenFactory
) -> None:
    """With JWT_MAX_TTL=600: a 1-hour token is 401; a 5-minute one works."""
    now = int(time.time())
    refused = "invalid token: it lives longer than JWT_MAX_TTL (600 s)"
    with TestClient(create_app(settings_factory(jwt_max_ttl=600))) as client:
        assert _publish_status(client, make_token(ttl=3600)) == (401, {"detail": refused})
        # Issued long ago, expiring soon: its lifetime is what counts.
        old = make_token(ttl=300, iat=now - 3000)
        assert _publish_status(client, old) == (401, {"detail": refused})
        assert _publish_status(client, make_token(ttl=300))[0] == 202
        assert _publish_status(client, make_token(ttl=300, iat=now))[0] == 202


def test_without_jwt_max_ttl_any_lifetime_is_accepted(
    client: TestClient, make_token: TokenFactory
) -> None:
    """JWT_MAX_TTL is optional: unset, a year-long token is accepted."""
    assert _publish_status(client, make_token(ttl=365 * 86400))[0] == 202


@pytest.mark.parametrize(
    ("overrides", "warns"),
    [
        ({}, True),
        ({"environment": "development"}, False),
        ({"jwt_audience": "realtime"}, False),
        ({"allowed_origins": "https://app.example.com"}, False),
    ],
    ids=["production-defaults", "development", "audience-set", "origins-listed"],
)
def test_a_startup_warning_for_any_origin_without_an_audience(
    settings_factory: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
    overrides: dict[str, str],
    warns: bool,
) -> None:
    """`ALLOWED_ORIGINS=*` with no `JWT_AUDIENCE` outside development: one WARNING at startup."""
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings_factory(**overrides))):
        pass
    warnings = [r for r in caplog.records if "ALLOWED_ORIGINS is *" in r.getMessage()]
    assert [r.levelname for r in warnings] == (["WARNING"] if warns else [])
