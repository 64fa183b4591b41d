"""``messenger-gw import``: the app's export (users, friendships, groups, history) created in OpenIM."""

from .export import KINDS, BadLine
from .importer import Options, Report
from .run import run_import

__all__ = ["KINDS", "BadLine", "Options", "Report", "run_import"]
