"""The store: the Store interface with its Redis and in-memory implementations, the in-process cache, cross-
replica invalidation and the nonce coalescer.
"""

from ._coalescer import SetIfAbsentCoalescer
from .base import STORE, Store, StoreError, StreamEntry
from .cache import TTLCache
from .invalidation import INVALIDATION, Invalidation, listening
from .memory_store import MemoryStore
from .redis_store import RedisStore

__all__ = [
    "INVALIDATION",
    "STORE",
    "Invalidation",
    "MemoryStore",
    "RedisStore",
    "SetIfAbsentCoalescer",
    "Store",
    "StoreError",
    "StreamEntry",
    "TTLCache",
    "listening",
]
