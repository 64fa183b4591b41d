"""An in-process OpenIM v3.8.3 REST emulator, for dev mode and tests.

It reproduces the contract in ``openim-contract.md`` for the routes the
gateway uses; it is never a substitute for reading that document.
"""

from .app import SANDBOX, create_sandbox_app
from .envelope import CodeError
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
]
