"""The audited admin API: its authentication, the audit log and the enforcement actions (ban, unban, force
logout).
"""

from .actions import MODERATION, Moderation, retrying
from .audit import AUDIT_LOG, AuditEntry, AuditLog, retrying_writes
from .auth import ADMIN_AUTHENTICATOR, AdminAuthenticator
from .routes import create_admin_app

__all__ = [
    "ADMIN_AUTHENTICATOR",
    "AUDIT_LOG",
    "MODERATION",
    "AdminAuthenticator",
    "AuditEntry",
    "AuditLog",
    "Moderation",
    "create_admin_app",
    "retrying",
    "retrying_writes",
]
