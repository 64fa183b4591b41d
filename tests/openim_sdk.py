"""Running the official OpenIM JavaScript SDK (tests/openim-sdk/) from pytest.

Each scenario is a Node script that takes its arguments as one JSON string and prints one
``RESULT {...}`` line; tests assert on that result, which holds what the SDK reported (its
events and return values). Every run is bounded in time and ends with its whole process group
killed: the SDK never exits by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

SDK_DIR = Path(__file__).resolve().parent / "openim-sdk"
RESULT_MARK = b"RESULT "


def node() -> str:
    binary = shutil.which("node")
    if binary is None or not (SDK_DIR / "node_modules" / "@openim" / "client-sdk").is_dir():
        pytest.fail(
            "Node or the SDK is missing: run the suite through `make test` (it runs npm ci in tests/openim-sdk)"
        )
    return binary


async def run_node(script: str, args: Any, *, limit: float = 30.0) -> Any:
    """Run ``tests/openim-sdk/<script>`` with ``args``; returns the parsed ``RESULT`` value."""
    process = await asyncio.create_subprocess_exec(
        node(),
        str(SDK_DIR / script),
        orjson.dumps(args).decode(),
        cwd=SDK_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, killed whole below
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        pytest.fail(f"{script} ran past {limit} s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return orjson.loads(line[len(RESULT_MARK) :])
    tail = (stdout[-2000:] + b"\n" + stderr[-2000:]).decode(errors="replace")
    pytest.fail(f"{script} printed no RESULT line (exit {process.returncode}):\n{tail}")


async def run_scenario(script: str, args: dict[str, Any], *, limit: float = 30.0) -> dict[str, Any]:
    """A scenario's result; fails the test on the script's own error. The script stops itself
    2 s before ``limit``, so its own report of what it waited for arrives first."""
    result: dict[str, Any] = await run_node(script, args | {"timeoutMs": int(limit * 1000) - 2000}, limit=limit)
    assert result["ok"], result.get("error")
    return result
