"""``messenger-gw client``: drive a gateway from the shell with the Python client.

The session (its ID and key) is kept in a file with owner-only permissions
between invocations: ``--state``, by default under ``$XDG_STATE_HOME``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import orjson

from .client import GatewayClient, GatewayResponseError, SessionState


def default_state_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "messenger-gw" / "client-session.json"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    client = commands.add_parser("client", help="drive a gateway from the shell: handshake, login, call, logout")
    client.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway (default %(default)s)")
    client.add_argument("--state", type=Path, default=default_state_path(), help="session file (default %(default)s)")
    actions = client.add_subparsers(dest="action", required=True, metavar="ACTION")
    handshake = actions.add_parser("handshake", help="start a session (X25519 key agreement)")
    handshake.add_argument("--platform", type=int, default=5, help="OpenIM platformID, 1-9 (default 5, Web)")
    login = actions.add_parser("login", help="log the session in")
    login.add_argument("--user", help="dev mode: the userID")
    login.add_argument("--code", help="dev mode: the OTP code (MESSENGER_GW_DEV_OTP_CODE, default 000000)")
    login.add_argument("--credentials", help="the credentials object as JSON, for the user-service")
    call = actions.add_parser("call", help="send a signed request and print the JSON reply")
    call.add_argument("path", help="e.g. /auth/session or /im/user/get_users_info")
    call.add_argument("json", nargs="?", help="the JSON body (POST)")
    call.add_argument("--method", default=None, help="default POST, or GET for /auth/session")
    actions.add_parser("logout", help="revoke the session")


def run(args: argparse.Namespace) -> int:
    state_path: Path = args.state
    try:
        state = None
        if args.action != "handshake":
            if not state_path.exists():
                raise ValueError(f"no session in {state_path}: run `messenger-gw client handshake` first")
            state = SessionState.load(state_path)
        status, state = asyncio.run(_run(args, state))
        if args.action == "handshake" and state is not None:
            state.save(state_path)
        elif args.action == "logout":
            state_path.unlink()
            print("logged out", file=sys.stderr)
        return status
    except GatewayResponseError as exc:
        print(f"messenger-gw client: {exc}", file=sys.stderr)
        return 1
    except aiohttp.ClientConnectionError as exc:
        print(f"messenger-gw client: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"messenger-gw client: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace, state: SessionState | None) -> tuple[int, SessionState | None]:
    async with GatewayClient(args.url, state=state) as gw:
        if args.action == "handshake":
            state = await gw.handshake(args.platform)
            _print({"sessionId": state.session_id, "platformID": state.platform_id, "expiresAt": state.expires_at})
        elif args.action == "login":
            _print(await gw.login(_credentials(args)))
        elif args.action == "logout":
            await gw.logout()
        else:
            method = args.method or ("GET" if args.json is None and args.path == "/auth/session" else "POST")
            body = orjson.loads(args.json) if args.json else (None if method == "GET" else {})
            response = await gw.request(method, args.path, body)
            print(f"HTTP {response.status}", file=sys.stderr)
            if response.body:
                _print(response.json())
            return (0 if response.status < 400 else 1), state
    return 0, state


def _credentials(args: argparse.Namespace) -> dict[str, object]:
    if args.credentials:
        credentials = orjson.loads(args.credentials)
        if not isinstance(credentials, dict):
            raise ValueError("--credentials must be a JSON object")
        return credentials
    if args.user and args.code:
        return {"userID": args.user, "code": args.code}
    raise ValueError("give --user and --code (dev mode), or --credentials JSON")


def _print(value: object) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
