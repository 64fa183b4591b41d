"""An in-process OpenIM v3.8.3 emulator (REST API and msg-gateway WebSocket), for dev mode and tests.

It reproduces the contract in ``openim-contract.md`` for the routes the
gateway uses; it is never a substitute for reading that document.
"""

from .app import SANDBOX, create_sandbox_app
from .envelope import CodeError
from .gateway import create_sandbox_ws_app
from .state import Caller, FakeClock, Sandbox, SandboxConfig, TokenState

__all__ = [
    "SANDBOX",
    "Caller",
    "CodeError",
    "FakeClock",
    "Sandbox",
    "SandboxConfig",
    "TokenState",
    "create_sandbox_app",
    "create_sandbox_ws_app",
]
