"""The ``messenger-gw`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from . import __version__, logs, migration, sdk, server
from .im import RouteTable, RouteTableError
from .legacy import LegacyRouteTableError, configured_table
from .media import StickerCatalog, StickerCatalogError
from .sandbox import SandboxConfig
from .settings import OPENIM_DEFAULT_ADMIN_USER_ID, OPENIM_DEFAULT_SECRET, ConfigError, HostPort, Settings

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "client":
        return sdk.run_client_command(args)
    try:
        if args.command == "sandbox":
            return _sandbox(args)
        settings = Settings.from_env(os.environ, dev=args.command == "dev" or getattr(args, "dev", False))
    except ConfigError as exc:
        print(f"messenger-gw: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "import":
        return _import(args, settings)
    try:
        table = RouteTable.load(settings.route_table)
    except (RouteTableError, OSError) as exc:
        print(f"messenger-gw: route table error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        legacy_table = configured_table(settings.legacy, im_routes={route.label for route in table})
    except (LegacyRouteTableError, OSError) as exc:
        print(f"messenger-gw: legacy route table error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        StickerCatalog.of(settings)
    except StickerCatalogError as exc:
        print(f"messenger-gw: sticker catalog error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        width = max(len(name) for name, _ in settings.describe())
        for name, value in settings.describe():
            print(f"{name:<{width}}  {value}")
        live = [route.label for route in table if route.phase <= settings.phase]
        heading = f"routes live in phase {settings.phase}"
        print(f"{heading:<{width}}  {len(live)} of {len(list(table))}: {' '.join(live)}")
        if legacy_table is not None:
            passing = [f"{'|'.join(r.methods)} {r.label}" for r in legacy_table if r.live(settings.phase)]
            heading = f"legacy routes passing in phase {settings.phase}"
            print(f"{heading:<{width}}  {len(passing)} of {len(list(legacy_table))}: {', '.join(passing) or '-'}")
        return 0
    logs.configure(settings.log_level)
    workers = getattr(args, "workers", 1)
    try:
        if workers > 1:
            return server.run_workers(workers)
        server.run(settings, reuse_port=getattr(args, "reuse_port", False))
    except OSError as exc:  # most often: the address is in use
        print(f"messenger-gw: cannot start: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    logs.configure("info")
    config = SandboxConfig(
        secret=args.secret,
        admin_user_ids=tuple(args.admin_user_id or [OPENIM_DEFAULT_ADMIN_USER_ID]),
        token_expire_days=args.token_expire_days,
    )
    try:
        server.run_sandbox(HostPort(args.host, args.port), config, HostPort(args.host, args.ws_port))
    except OSError as exc:
        print(f"messenger-gw: cannot start the sandbox: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    logs.configure(settings.log_level)
    if not args.export_dir.is_dir():
        print(f"messenger-gw: {args.export_dir} is not a folder holding the export", file=sys.stderr)
        return EXIT_CONFIG
    options = migration.Options(
        export_dir=args.export_dir,
        messages=args.messages,
        dry_run=args.dry_run,
        concurrency=args.concurrency,
        rate=args.rate,
        checkpoint=args.checkpoint,
        progress=not args.no_progress,
    )
    try:
        report = asyncio.run(migration.run_import(settings, options))
    except ValueError as exc:
        print(f"messenger-gw: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    args.report.write_bytes(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2))
    print("\n".join(report.summary()))
    print(f"report: {args.report}")
    return 0 if report.ok else 1


def _rate(text: str) -> float:
    value = float(text)
    if not 0.1 <= value <= 10_000:
        raise argparse.ArgumentTypeError("must be between 0.1 and 10000 calls per second")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="messenger-gw", description="Edge gateway in front of OpenIM.")
    parser.add_argument("--version", action="version", version=f"messenger-gw {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run in production mode (needs REDIS_URL, OPENIM_API_URL, ...)")
    serve.add_argument(
        "--workers", type=_positive, default=1, help="processes sharing the port with SO_REUSEPORT (default 1)"
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for each worker
    commands.add_parser("dev", help="run with the in-memory store and an embedded OpenIM sandbox")
    check = commands.add_parser(
        "check-config",
        help="validate the MESSENGER_GW_* variables and print the effective configuration, secrets masked",
    )
    check.add_argument("--dev", action="store_true", help="validate for dev mode rather than production")
    sandbox = commands.add_parser("sandbox", help="run the OpenIM sandbox alone")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=10002)
    sandbox.add_argument("--ws-port", type=int, default=10001, help="the msg-gateway WebSocket (default 10001)")
    sandbox.add_argument("--secret", default=OPENIM_DEFAULT_SECRET)
    sandbox.add_argument(
        "--admin-user-id", action="append", default=None, help=f"repeatable; default {OPENIM_DEFAULT_ADMIN_USER_ID}"
    )
    sandbox.add_argument("--token-expire-days", type=int, default=90)
    imports = commands.add_parser(
        "import", help="create the app's users, friendships, groups (and history) in OpenIM from an export"
    )
    imports.add_argument("export_dir", type=Path, help="the folder of the export (docs/import.md)")
    imports.add_argument("--messages", action="store_true", help="import messages.jsonl too (the history)")
    imports.add_argument("--dry-run", action="store_true", help="ask OpenIM what exists, create nothing, report")
    imports.add_argument("--concurrency", type=_positive, default=4, help="calls to OpenIM at once (default 4)")
    imports.add_argument("--rate", type=_rate, default=20.0, help="calls to OpenIM per second at most (default 20)")
    imports.add_argument("--checkpoint", default="default", help="the checkpoint's name in the store")
    imports.add_argument("--report", type=Path, default=Path("import-report.json"), help="the JSON report's path")
    imports.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    imports.add_argument("--dev", action="store_true", help="read the configuration as dev mode does")
    sdk.add_client_command(commands)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError("must be between 1 and 64")
    return value


if __name__ == "__main__":
    sys.exit(main())
