"""Who a request (or a WebSocket upgrade) is from, once authenticated, and the refusal when it is no one."""

from __future__ import annotations

import dataclasses
from typing import Literal

from messenger_gw import errors

from .sessions import Session


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    user_id: str | None  # None until the session's user logs in
    platform_id: int
    via: Literal["signature", "jwt", "im_token"]
    session: Session | None = None
    jwt_id: str | None = None
    # The OpenIM token the caller presented (imToken callers only): the one OpenIM is called with.
    im_token: str | None = dataclasses.field(default=None, repr=False)


class Unauthenticated(errors.GatewayError):
    status = 401
    code = errors.UNAUTHENTICATED

    def __init__(self, reason: str) -> None:
        super().__init__("Authentication failed", detail=reason)
        self.reason = reason
