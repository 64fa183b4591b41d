"""Running Node test files (``node --test``) from pytest: bounded in time, their process group killed.

The JavaScript client's tests and the web chat's browser tests start what they need themselves
(``messenger-gw dev``, Chromium); a run that passes its bound is killed whole, with everything it
started, and its output shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]


def require(path: Path, what: str) -> None:
    if not path.exists():
        pytest.fail(f"{what} is missing ({path}): run the suite through `make test`, which builds it")


async def run_node_tests(cwd: Path, test_file: str, *, limit: float, env: dict[str, str] | None = None) -> str:
    """``node --test test_file`` in ``cwd``; fails the pytest test, with the output, unless tests ran and all passed."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: run the suite through `make test`, which installs it")
    process = await asyncio.create_subprocess_exec(
        node,
        "--test",
        "--test-reporter=tap",
        # A test that hangs fails alone, with the others' results kept. The bound holds for the
        # whole file as well, so it stays under the run's own limit rather than under one test's.
        f"--test-timeout={int((limit - 5) * 1000)}",
        test_file,
        cwd=cwd,
        # The interpreter running pytest starts the gateway, so it is this checkout's code under test.
        env=os.environ | {"MESSENGER_GW_PYTHON": sys.executable} | (env or {}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, with the gateway it starts: killed whole below
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        # SIGTERM first: playwright closes the browsers it started, which live in groups of their own.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 5)
        pytest.fail(f"{test_file} ran past {limit} s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
    text = output.decode(errors="replace")
    if process.returncode != 0:
        pytest.fail(f"{test_file} failed (exit {process.returncode}):\n{text[-8000:]}", pytrace=False)
    ran = re.search(r"^# tests (\d+)$", text, re.MULTILINE)
    if ran is None or int(ran.group(1)) == 0:
        pytest.fail(f"{test_file} ran no test:\n{text[-2000:]}", pytrace=False)
    return text
