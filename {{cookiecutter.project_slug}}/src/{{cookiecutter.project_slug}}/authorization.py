"""Who may subscribe or publish to which channel: the one rule every transport asks.

By default the token's claims decide (`claims_rule`: the `subscribe` and
`publish` glob patterns). To decide otherwise (a database lookup, a role
claim, a tenant prefix), edit `authorize` below or pass your own rule to
`create_app(authorize=...)`. A rule is a plain or `async` function of the
principal, the channel and the action; it returns `True` to allow.

It is asked on every SSE stream request, every WebSocket `subscribe` and
`publish` frame and every HTTP publish, always with the connection's current
principal: after a WebSocket `refresh`, the new token's, and then also for
every subscription the connection already holds (those it refuses are ended
with `unsubscribed` and a reason). An exception raised
by a rule refuses the request as a server error (HTTP 500, or the WebSocket
connection closes with 1011) and is logged.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Literal

from .auth import Principal

Action = Literal["subscribe", "publish"]
Rule = Callable[[Principal, str, Action], bool | Awaitable[bool]]


def claims_rule(principal: Principal, channel: str, action: Action) -> bool:
    """The token's `subscribe` / `publish` claim covers `channel`."""
    if action == "subscribe":
        return principal.can_subscribe(channel)
    return principal.can_publish(channel)


def authorize(principal: Principal, channel: str, action: Action) -> bool | Awaitable[bool]:
    """The service's rule. Replace the body to change who may do what."""
    return claims_rule(principal, channel, action)


class Authorizer:
    """Runs a rule, sync or async, and answers `True` only for an explicit `True`."""

    __slots__ = ("_rule",)

    def __init__(self, rule: Rule = authorize) -> None:
        self._rule = rule

    async def allows(self, principal: Principal, channel: str, action: Action) -> bool:
        """Whether `principal` may `action` on `channel`."""
        verdict = self._rule(principal, channel, action)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        # A rule that forgets to return refuses: `None` must not read as "allow".
        return verdict is True
