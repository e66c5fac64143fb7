"""Your own authorization rule: sync or async, asked for every subscribe and publish."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx2
import pytest

from {{ cookiecutter.project_slug }}.auth import Principal
from {{ cookiecutter.project_slug }}.authorization import Action, Authorizer, claims_rule

from conftest import ServerFactory, TokenFactory
from servers import ServerProcess, wait_for

EXAMPLE = "authz_example:create"
alice = Principal(sub="alice", exp=0, subscribe=("room:*",), publish=())


async def allow_everything_async(principal: Principal, channel: str, action: Action) -> bool:
    return True


def forgets_to_return(principal: Principal, channel: str, action: Action) -> bool:
    return None  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("rule", "action", "allowed"),
    [
        (claims_rule, "subscribe", True),
        (claims_rule, "publish", False),
        (allow_everything_async, "publish", True),
        (forgets_to_return, "subscribe", False),
    ],
)
async def test_authorizer_runs_sync_and_async_rules(
    rule: Callable[[Principal, str, Action], bool | Awaitable[bool]],
    action: Action,
    allowed: bool,
) -> None:
    """Sync and async rules both decide; only an explicit `True` allows."""
    assert await Authorizer(rule).allows(alice, "room:1", action) is allowed


def post(server: ServerProcess, token: str, channel: str) -> httpx2.Response:
    return httpx2.post(
        f"{server.url}/channels/{channel}/events",
        json={"data": "hi"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )


def test_http_publish_asks_the_rule_not_the_claims(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """Glob claims granting everything don't matter: the example rule alone decides."""
    server = start_server(factory=EXAMPLE)
    moderator = make_token(sub="alice", roles=["moderator"])
    member = make_token(sub="alice")
    assert post(server, moderator, "room:1").status_code == 202
    refused = post(server, member, "room:1")
    assert (refused.status_code, refused.json()) == (
        403,
        {"detail": "token may not publish to 'room:1'"},
    )
    assert post(server, moderator, "room:2").status_code == 403
    # The refusals changed nothing for anyone else.
    assert post(server, make_token(sub="carol", roles=["moderator"]), "room:1").status_code == 202


def test_a_failing_rule_is_a_logged_server_error_for_that_request_only(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """A rule that raises: 500 for that request, the error in the log, the service fine."""
    server = start_server(factory=EXAMPLE)
    moderator = make_token(sub="alice", roles=["moderator"])
    assert post(server, moderator, "room:broken").status_code == 500
    # The server logs the traceback once the 500 has been sent.
    wait_for(lambda: "membership database unreachable" in server.output(), 5, "not logged")
    assert post(server, moderator, "room:1").status_code == 202
