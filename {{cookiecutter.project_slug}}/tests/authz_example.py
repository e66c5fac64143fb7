"""An example authorization rule, served by `start_server(factory="authz_example:create")`.

Room membership comes from a lookup (a dict standing in for a database table),
not from the token's glob claims; publishing also needs a `moderator` role claim.
The channel `room:broken` stands for a lookup that fails.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from {{ cookiecutter.project_slug }}.auth import Principal
from {{ cookiecutter.project_slug }}.authorization import Action
from {{ cookiecutter.project_slug }}.main import create_app

ROOM_MEMBERS: dict[str, set[str]] = {"room:1": {"alice", "carol"}, "room:2": {"bob"}}


async def members_and_moderators(principal: Principal, channel: str, action: Action) -> bool:
    """Members may subscribe to their rooms; members with the `moderator` role may publish."""
    await asyncio.sleep(0)  # where a real rule awaits its database
    if channel == "room:broken":
        raise ConnectionError("membership database unreachable")
    if principal.sub not in ROOM_MEMBERS.get(channel, set()):
        return False
    roles = principal.claims.get("roles")
    return action == "subscribe" or (isinstance(roles, list) and "moderator" in roles)


def create() -> FastAPI:
    """The service with the example rule in place of the claims check."""
    return create_app(authorize=members_and_moderators)
