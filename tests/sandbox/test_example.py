"""examples/two-users runs as the README says, against a sandbox like `make run`'s."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.openim_sdk import SDK_DIR, node
from tests.sandbox.fixtures import IM, im, ws_url  # noqa: F401 - fixtures

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-users"

pytestmark = pytest.mark.slow


async def test_the_two_users_example_exchanges_a_message(im: IM, tmp_path: Path) -> None:  # noqa: F811
    # The newcomer's `npm install` is stood in for by the suite's own copy of the same SDK.
    shutil.copy(EXAMPLE / "chat.mjs", tmp_path / "chat.mjs")
    shutil.copy(EXAMPLE / "package.json", tmp_path / "package.json")
    (tmp_path / "node_modules").symlink_to(SDK_DIR / "node_modules")
    env = os.environ | {"OPENIM_API_URL": im.api_addr, "OPENIM_WS_URL": im.ws_addr}
    process = await asyncio.create_subprocess_exec(
        node(), "chat.mjs", cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    printed = [line for line in stdout.decode().splitlines() if not line.startswith("OpenIMSDK v")]  # the SDK's banner
    assert printed == [
        "alice and bob are logged in",
        'bob received: "hello bob" from alice',
        'alice received: "hi alice" from bob',
    ]
