"""OpenIM's webhooks: the receiver, the typed models of every callback, the consumer of after-events and the
local spool.
"""

from ._spool import Spool
from .consumer import WEBHOOK_CONSUMER, WebhookConsumer, consuming
from .receiver import WEBHOOK_RECEIVER, WebhookReceiver, create_webhook_app, replaying

__all__ = [
    "WEBHOOK_CONSUMER",
    "WEBHOOK_RECEIVER",
    "Spool",
    "WebhookConsumer",
    "WebhookReceiver",
    "consuming",
    "create_webhook_app",
    "replaying",
]
