"""The store: the Store interface with its Redis and in-memory implementations, the in-process cache, cross-
replica invalidation and the coalescer of concurrent calls (nonce claims, token buckets).
"""

from ._coalescer import Coalescer, SetIfAbsentCoalescer
from .base import STORE, Bucket, Store, StoreError, StreamEntry
from .cache import TTLCache
from .invalidation import INVALIDATION, Invalidation, listening
from .memory_store import MemoryStore
from .redis_store import RedisStore

__all__ = [
    "INVALIDATION",
    "STORE",
    "Bucket",
    "Coalescer",
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
