"""Who may read the media routes: a logged-in, unbanned caller, authenticated as /im authenticates."""

from __future__ import annotations

from aiohttp import web

from messenger_gw.auth import AUTHENTICATOR
from messenger_gw.moderation import BANS


async def logged_in_user(request: web.Request) -> str:
    """The caller's userID; 401 for a missing, bad or anonymous credential, 403 for a banned user."""
    authenticator = request.app[AUTHENTICATOR]  # the one /im uses, as /im uses it: what /im accepts goes here
    caller = await authenticator.authenticate(request, allow_im_token=True)
    if caller.user_id is None:
        raise authenticator.rejected("not_logged_in")
    await request.app[BANS].check(caller.user_id)
    return caller.user_id
