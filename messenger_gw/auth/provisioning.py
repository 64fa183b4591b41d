"""Provisioning a user in OpenIM: registered, holding a token for the platform, not banned.

Used by login and by the user-service's ``/internal/provision``; answers the
login reply ``{"userID", "imToken", "wsURL", "apiAddr", "expiresAt"}``: what the OpenIM SDK needs too, its
token, its WebSocket and the base of its REST calls (the gateway's ``/im``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from messenger_gw.moderation import Bans
from messenger_gw.openim import ImTokens


@dataclasses.dataclass(frozen=True, slots=True)
class Provisioned:
    user_id: str
    im_token: str = dataclasses.field(repr=False)
    ws_url: str
    api_addr: str
    expires_at: int

    def as_json(self) -> dict[str, Any]:
        return {
            "userID": self.user_id,
            "imToken": self.im_token,
            "wsURL": self.ws_url,
            "apiAddr": self.api_addr,
            "expiresAt": self.expires_at,
        }


class Provisioner:
    def __init__(self, bans: Bans, im_tokens: ImTokens, *, ws_url: str, api_addr: str, min_remaining: float) -> None:
        self._bans = bans
        self._im_tokens = im_tokens
        self._ws_url = ws_url
        self._api_addr = api_addr
        self._min_remaining = min_remaining

    async def provision(self, user_id: str, platform_id: int, *, nickname: str, operation_id: str) -> Provisioned:
        await self._bans.check(user_id)
        token = await self._im_tokens.obtain(
            user_id, platform_id, nickname=nickname, min_remaining=self._min_remaining, operation_id=operation_id
        )
        return Provisioned(user_id, token.token, self._ws_url, self._api_addr, token.expires_at)


PROVISIONER: web.AppKey[Provisioner] = web.AppKey("provisioner", Provisioner)
