"""One ``messenger-gw import`` run: OpenIM's client and admin token and the store, opened for it and closed after."""

from __future__ import annotations

from messenger_gw.metrics import Metrics
from messenger_gw.openim import AdminTokenManager, Deadlines, OpenIMClient, new_pool
from messenger_gw.settings import Settings
from messenger_gw.store import MemoryStore, RedisStore, Store

from .importer import Checkpoint, Importer, Options, Report


async def run_import(settings: Settings, options: Options) -> Report:
    """Import the export in ``options.export_dir`` into the OpenIM of ``settings``; the checkpoint is in its Redis.

    In dev mode the OpenIM is ``make run``'s sandbox unless ``OPENIM_API_URL`` says otherwise, and without
    ``REDIS_URL`` the checkpoint lasts only as long as the run: enough to try the import, not to resume one."""
    url = settings.openim_api_url or (settings.dev_sandbox_listen.url if settings.dev else None)
    if url is None:
        raise ValueError("the import needs MESSENGER_GW_OPENIM_API_URL")
    store: Store
    if settings.redis_url is not None:
        store = RedisStore.from_url(settings.redis_url.reveal())
    elif settings.dev:
        store = MemoryStore()
    else:
        raise ValueError("the import keeps its checkpoint in the store: set MESSENGER_GW_REDIS_URL")
    t = settings.openim_timeouts
    # A connection per call at most in flight: the run's concurrency, never OpenIM's whole pool size.
    pool = new_pool(url, max_connections=options.concurrency + 1, connect=t.connect, pool=t.total)
    metrics = Metrics()
    client = OpenIMClient(pool, url, metrics=metrics, deadlines=Deadlines(read=t.read, total=t.total))
    tokens = AdminTokenManager(
        client, settings.openim_secret, settings.openim_admin_user_id, metrics=metrics,
        max_age=settings.admin_token_max_age,
    )  # fmt: skip
    try:
        await store.ping()
        checkpoint = Checkpoint(store, options.checkpoint, dry_run=options.dry_run)
        return await Importer(client, tokens, checkpoint, options).run()
    finally:
        await tokens.stop()
        await store.close()
        await pool.close()
