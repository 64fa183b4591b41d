"""The /im proxy: its chain, and the route table and its body rules."""

from .route_policy import ROUTE_TABLE, RouteTable, RouteTableError

__all__ = ["ROUTE_TABLE", "RouteTable", "RouteTableError"]

from .proxy import add_routes

__all__ += ["add_routes"]
