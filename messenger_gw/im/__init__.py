"""The /im proxy: its chain, the route table and its body rules, and membership knowledge."""

from .conversation_access import CONVERSATION_ACCESS, ConversationAccess
from .route_policy import ROUTE_TABLE, RouteTable, RouteTableError

__all__ = ["CONVERSATION_ACCESS", "ROUTE_TABLE", "ConversationAccess", "RouteTable", "RouteTableError"]

from .proxy import add_routes

__all__ += ["add_routes"]
