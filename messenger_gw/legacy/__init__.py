"""The legacy chat service behind the phase switch: its route table and the ``/legacy`` proxy."""

from .routes import PREFIX, LegacyRoute, LegacyRouteTable, LegacyRouteTableError, configured_table

__all__ = ["PREFIX", "LegacyRoute", "LegacyRouteTable", "LegacyRouteTableError", "configured_table"]

from .proxy import ANSWER_HEADERS, LEGACY_SERVICE, LegacyService, add_routes

__all__ += ["ANSWER_HEADERS", "LEGACY_SERVICE", "LegacyService", "add_routes"]
