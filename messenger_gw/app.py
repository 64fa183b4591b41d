"""``create_app``: the gateway's aiohttp application, wired from its settings.

Resources (the store, the OpenIM session, the admin-token refresher) live in
``cleanup_ctx`` so they open before the first request and close after the
last one has drained. State is reached through typed ``web.AppKey`` keys
declared next to the type they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from . import auth, im, legacy, media, ws
from .admin import (
    ADMIN_AUTHENTICATOR,
    AUDIT_LOG,
    MODERATION,
    AdminAuthenticator,
    AuditLog,
    Moderation,
    create_admin_app,
    retrying,
    retrying_writes,
)
from .auth import (
    AUTHENTICATOR,
    IDENTITY_VERIFIER,
    IM_TOKEN_VERIFIER,
    PROVISIONER,
    SESSIONS,
    Authenticator,
    DevOTPVerifier,
    IdentityVerifier,
    ImTokenVerifier,
    JWTVerifier,
    Provisioner,
    Sessions,
    UserServiceVerifier,
)
from .background import running
from .edge import CORS, DRAINING, CORSPolicy, edge_middleware, healthz, readyz
from .im import ROUTE_TABLE, RouteTable
from .legacy import ANSWER_HEADERS, LEGACY_SERVICE, LegacyService, configured_table
from .media import GIF_SEARCH, STICKER_CATALOG, StickerCatalog, gif_search
from .metrics import METRICS, Metrics, flushing, metrics_handler
from .moderation import (
    BANS,
    MESSAGE_RULES,
    RATE_LIMITS,
    Bans,
    EagerRateLimits,
    MessageRules,
    RateLimit,
    RateLimits,
    WordRules,
)
from .openim import (
    ADMIN_TOKENS,
    CONVERSATION_ACCESS,
    IM_TOKENS,
    OPENIM,
    AdminTokenManager,
    ConversationAccess,
    Deadlines,
    ImTokens,
    OpenIMClient,
    new_pool,
)
from .settings import SETTINGS, Settings
from .store import INVALIDATION, STORE, Invalidation, MemoryStore, RedisStore, Store, StoreError, listening
from .webhooks import (
    WEBHOOK_CONSUMER,
    WEBHOOK_RECEIVER,
    Spool,
    WebhookConsumer,
    WebhookReceiver,
    consuming,
    create_webhook_app,
    replaying,
)
from .ws import WS_GUARD, FramePolicy, WsGuard, guarding


def create_app(settings: Settings) -> web.Application:
    if settings.openim_api_url is None:
        raise ValueError("settings.openim_api_url is unset: start the sandbox first (see server.run_dev)")
    app = web.Application(
        middlewares=[edge_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[ROUTE_TABLE] = RouteTable.load(settings.route_table)
    app[METRICS] = Metrics()
    app[STICKER_CATALOG] = StickerCatalog.of(settings, metrics=app[METRICS])  # a bad catalog stops start-up
    app[CORS] = CORSPolicy(settings.cors)
    app[DRAINING] = asyncio.Event()
    app.cleanup_ctx.append(_metrics_ctx)
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_openim_ctx)
    app.cleanup_ctx.append(_auth_ctx)
    app.cleanup_ctx.append(_admin_ctx)
    app.cleanup_ctx.append(_webhooks_ctx)
    app.cleanup_ctx.append(_media_ctx)
    guarded = settings.ws_guard.upstream_url is not None  # else no /ws: clients go to OpenIM's msg-gateway directly
    if guarded:
        app.cleanup_ctx.append(_ws_ctx)
    legacy_table = configured_table(settings.legacy, im_routes={route.label for route in app[ROUTE_TABLE]})
    if legacy_table is not None:
        app.cleanup_ctx.append(_legacy_ctx)
    app.on_shutdown.append(_start_draining)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    auth.add_routes(app)
    im.add_routes(app)
    media.add_routes(app)
    if guarded:
        ws.add_routes(app)
    if legacy_table is not None:
        legacy.add_routes(app, legacy_table)
    app.add_subapp("/admin/", create_admin_app())
    app.add_subapp("/webhooks/openim/", create_webhook_app())
    return app


def open_store(settings: Settings) -> Store:
    if settings.redis_url is None:
        if not settings.dev:
            raise ValueError("the in-memory store is only for dev mode")
        return MemoryStore()
    return RedisStore.from_url(settings.redis_url.reveal())


async def _metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    async with flushing(app[METRICS]):
        yield


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = open_store(app[SETTINGS])
    app[STORE] = store
    app[INVALIDATION] = invalidation = Invalidation(store)
    async with listening(invalidation):
        yield
    await store.close()


async def _openim_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.openim_api_url is not None  # checked by create_app
    t = settings.openim_timeouts
    url = settings.openim_api_url
    pool = new_pool(url, max_connections=settings.openim_max_connections, connect=t.connect, pool=t.pool)
    deadlines = Deadlines(read=t.read, total=t.total)
    client = OpenIMClient(pool, url, metrics=app[METRICS], deadlines=deadlines)
    app[METRICS].watch_openim_pool(pool.state)
    tokens = AdminTokenManager(
        client,
        settings.openim_secret,
        settings.openim_admin_user_id,
        metrics=app[METRICS],
        max_age=settings.admin_token_max_age,
    )
    app[OPENIM] = client
    app[ADMIN_TOKENS] = tokens
    await tokens.start()
    yield
    await tokens.stop()
    await pool.close()


async def _auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """Client authentication, bans, imTokens and login."""
    settings, store, metrics = app[SETTINGS], app[STORE], app[METRICS]
    app[SESSIONS] = sessions = Sessions(store, app[INVALIDATION], ttl=settings.session_ttl)
    app[BANS] = bans = Bans(store, app[INVALIDATION])
    # One set of message rules for OpenIM's before-send callbacks and the WebSocket guard's frames.
    app[MESSAGE_RULES] = MessageRules(bans, WordRules(settings.webhooks.banned_words_file))
    app[IM_TOKENS] = im_tokens = ImTokens(store, app[OPENIM], app[ADMIN_TOKENS], app[INVALIDATION])
    # For the WebSocket guard's upgrades as for /im: a token string in, a caller or a refusal out.
    app[IM_TOKEN_VERIFIER] = im_token_verifier = ImTokenVerifier(settings.openim_secret, im_tokens, bans)
    app[AUTHENTICATOR] = Authenticator(
        sessions,
        JWTVerifier(settings.jwt) if settings.jwt.enabled else None,
        im_token_verifier if settings.im_token_auth else None,  # off: /im refuses imTokens
        metrics=metrics,
    )
    app[PROVISIONER] = Provisioner(
        bans,
        im_tokens,
        ws_url=settings.openim_ws_url,
        api_addr=settings.public_im_url,
        min_remaining=settings.login.im_token_min_remaining,
    )
    app[CONVERSATION_ACCESS] = ConversationAccess(app[OPENIM], app[ADMIN_TOKENS], app[INVALIDATION])
    app[auth.HANDSHAKE_RATE_LIMIT] = RateLimit(store, "handshake", settings.handshake_rate_limit, metrics=metrics)
    app[RATE_LIMITS] = RateLimits(store, settings.rate_limits, metrics=metrics)
    async with aiohttp.ClientSession() as user_service:
        app[IDENTITY_VERIFIER] = _identity_verifier(settings, user_service)
        yield


async def _admin_ctx(app: web.Application) -> AsyncIterator[None]:
    """The admin API's authenticator, the audit log and its write retries, moderation and its force-logout retries."""
    settings, store = app[SETTINGS], app[STORE]
    jwt_verifier = app[AUTHENTICATOR].jwt_verifier
    app[ADMIN_AUTHENTICATOR] = AdminAuthenticator(settings.admin, jwt_verifier, metrics=app[METRICS])
    app[AUDIT_LOG] = audit_log = AuditLog(store, max_entries=settings.admin.audit_max_entries, metrics=app[METRICS])
    app[MODERATION] = moderation = Moderation(
        store, app[OPENIM], app[ADMIN_TOKENS], app[SESSIONS], app[IM_TOKENS], app[BANS]
    )
    async with retrying(moderation), retrying_writes(audit_log):
        yield


async def _webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """OpenIM's callbacks: the receiver with its spool replay, and the after-event consumer."""
    hooks, store, metrics = app[SETTINGS].webhooks, app[STORE], app[METRICS]
    app[WEBHOOK_RECEIVER] = receiver = WebhookReceiver(
        hooks, store, app[BANS], metrics=metrics, spool=Spool(hooks.spool_dir), message_rules=app[MESSAGE_RULES]
    )
    app[WEBHOOK_CONSUMER] = consumer = WebhookConsumer(
        store,
        app[AUDIT_LOG],
        WordRules(hooks.flagged_words_file),
        metrics=metrics,
        memberships=app[CONVERSATION_ACCESS],
    )
    async with replaying(receiver), consuming(consumer):
        yield


async def _legacy_ctx(app: web.Application) -> AsyncIterator[None]:
    """The legacy chat service's pool of connections, of its own: its calls never wait for OpenIM's."""
    settings, metrics = app[SETTINGS].legacy, app[METRICS]
    assert settings.url is not None  # only added with a URL
    t = settings.timeouts
    pool = new_pool(
        settings.url, max_connections=settings.max_connections, connect=t.connect, pool=t.pool,
        kept_headers=ANSWER_HEADERS,
    )  # fmt: skip
    app[LEGACY_SERVICE] = LegacyService(pool, settings.url, settings, metrics=metrics)
    yield
    await pool.close()


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    """GIF search, with its own bounded session to the provider."""
    async with gif_search(app[SETTINGS].gifs, app[STORE], app[RATE_LIMITS], metrics=app[METRICS]) as search:
        app[GIF_SEARCH] = search
        yield


async def _ws_ctx(app: web.Application) -> AsyncIterator[None]:
    """The WebSocket guard, the tasks that end sockets (bans, idle) and the send buckets' spends."""
    settings = app[SETTINGS]
    policy = FramePolicy(
        app[CONVERSATION_ACCESS],
        app[MESSAGE_RULES],
        send_rate := EagerRateLimits(app[STORE], app[RATE_LIMITS], metrics=app[METRICS], clock=time.monotonic),
        block_errcode=settings.webhooks.block_errcode,
        fail_open=settings.webhooks.fail_open,
    )
    app[WS_GUARD] = guard = WsGuard(
        settings.ws_guard,
        app[IM_TOKEN_VERIFIER],
        policy,
        metrics=app[METRICS],
        origin_allowed=app[CORS].allows if settings.cors.enabled else None,
    )
    async with (
        guarding(guard, app[INVALIDATION]),
        running(send_rate.flush_forever(), name="ws-rate-flush", stop=send_rate.stop),
    ):
        yield
    with contextlib.suppress(StoreError, TimeoutError):  # what the last frames took, spent before the store closes
        async with asyncio.timeout(1):
            await send_rate.flush()


def _identity_verifier(settings: Settings, session: aiohttp.ClientSession) -> IdentityVerifier:
    login = settings.login
    if login.user_service_url is not None and login.user_service_token is not None:
        return UserServiceVerifier(
            session, login.user_service_url, login.user_service_token, timeout=login.user_service_timeout
        )
    if settings.dev and login.dev_otp_code is not None:
        return DevOTPVerifier(login.dev_otp_code)
    raise ValueError("no identity verifier: set MESSENGER_GW_USER_SERVICE_URL and MESSENGER_GW_USER_SERVICE_TOKEN")


async def _start_draining(app: web.Application) -> None:
    app[DRAINING].set()
