"""``/msg/*`` (contract section 4)."""

from __future__ import annotations

from typing import Any

from .envelope import Body
from .routing import route
from .state import Caller, Sandbox


@route("/msg/get_server_time")
def get_server_time(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    return {"serverTime": sb.now_ms()}
