"""Who may read the media routes: a logged-in, unbanned caller, authenticated as /im authenticates."""

from __future__ import annotations

from aiohttp import web

from messenger_gw.auth import logged_in_caller


async def logged_in_user(request: web.Request) -> str:
    """The caller's userID; 401 for a missing, bad or anonymous credential, 403 for a banned user."""
    caller = await logged_in_caller(request)  # as /im authenticates: what /im accepts goes here
    assert caller.user_id is not None
    return caller.user_id
