"""Every key, stream and channel the gateway uses in the store, in one place.

A session and its nonces share the hash tag ``{<sessionId>}`` so that, on
Redis Cluster, they live in one slot. ``im:token:<userID>`` is a contract
shared with other services (DESIGN section 5) and keeps its plain name.
"""

from __future__ import annotations

INVALIDATION_CHANNEL = "gw:invalidate"
BAN_INDEX = "gw:bans"  # hash: userID -> ban record, for listing
PENDING_FORCE_LOGOUT = "gw:pending-force-logout"  # hash: userID -> JSON list of platforms still to log out
AUDIT_STREAM = "gw:audit"
WEBHOOK_STREAM = "gw:webhooks"  # after-events, consumed by the group in webhooks/consumer.py
WEBHOOK_REJECTED_STREAM = "gw:webhooks:rejected"  # callbacks refused as malformed, for inspection
WEBHOOK_DEAD_STREAM = "gw:webhooks:dead"  # after-events that failed too often
MODERATION_FLAGS = "gw:moderation:flags"  # hash: event key -> flagged message


def session(session_id: str) -> str:
    return f"gw:session:{{{session_id}}}"


def nonce(session_id: str, value: str) -> str:
    return f"gw:session:{{{session_id}}}:nonce:{value}"


def im_token(user_id: str) -> str:
    """Hash of the user's OpenIM tokens: field = platformID, value = JSON {token, expiresAt}."""
    return f"im:token:{user_id}"


def im_token_mint_lock(user_id: str, platform_id: int) -> str:
    return f"im:token:{user_id}:mint-lock:{platform_id}"


def ban(user_id: str) -> str:
    return f"gw:ban:{user_id}"


def user_sessions(user_id: str) -> str:
    """Hash of the sessions bound to a user: field = sessionId, value = expiry."""
    return f"gw:user-sessions:{user_id}"


def rate(scope: str, subject: str) -> str:
    return f"gw:rate:{scope}:{subject}"


def webhook_effect(effect: str, event_key: str) -> str:
    """Marks an after-event's effect (``counted``, ``audited``) as applied, so a redelivery skips it."""
    return f"gw:webhook:{effect}:{event_key}"


def import_done(checkpoint: str, kind: str) -> str:
    """``messenger-gw import``'s checkpoint: hash of the records of ``kind`` (users, friendships, groups,
    messages) it has settled, field = the record's key, value = its outcome."""
    return f"gw:import:{{{checkpoint}}}:{kind}"


def import_in_flight(checkpoint: str) -> str:
    """Hash of the message each conversation is being sent, field = conversationID, value = messageID: a run
    stopped between sending it and recording it looks it up in OpenIM before sending it again."""
    return f"gw:import:{{{checkpoint}}}:in-flight"


def gif_page(digest: str) -> str:
    """A provider's answer to one GIF query (``digest`` names the provider, query, rating and page), shared by
    every replica."""
    return f"gw:gifs:{digest}"


def gif_fetch_lock(digest: str) -> str:
    """Held by the one replica asking the provider for ``gif_page(digest)``."""
    return f"gw:gifs:{digest}:fetch-lock"
