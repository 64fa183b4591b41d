"""What a client developer imports: the Python client and its command line."""

from .cli import add_parser as add_client_command
from .cli import run as run_client_command
from .client import GatewayClient, GatewayResponseError, Response, SessionState

__all__ = [
    "GatewayClient",
    "GatewayResponseError",
    "Response",
    "SessionState",
    "add_client_command",
    "run_client_command",
]
