"""The ``messenger-gw`` command as a user runs it: real processes, real ports."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import LOOPBACK, free_port

COMMAND = [sys.executable, "-m", "messenger_gw"]
PRODUCTION = {
    "MESSENGER_GW_REDIS_URL": "redis://:hunter2@127.0.0.1:6379/0",
    "MESSENGER_GW_OPENIM_API_URL": "http://127.0.0.1:10002",
    "MESSENGER_GW_OPENIM_SECRET": "s3cr3t-value",
    "MESSENGER_GW_OPENIM_WS_URL": "ws://127.0.0.1:10001",
    "MESSENGER_GW_PUBLIC_IM_URL": "http://127.0.0.1:8080/im",
    "MESSENGER_GW_USER_SERVICE_URL": "http://127.0.0.1:8000",
    "MESSENGER_GW_USER_SERVICE_TOKEN": "user-service-token-value",
}


def clean_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESSENGER_GW_")}
    return env | variables


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test server
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def test_check_config_prints_the_effective_configuration_with_secrets_masked() -> None:
    result = run("check-config", env=clean_env(**PRODUCTION))
    assert result.returncode == 0, result.stderr
    assert "MESSENGER_GW_OPENIM_API_URL" in result.stdout
    assert "redis://:********@127.0.0.1:6379/0" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr
    assert "s3cr3t-value" not in result.stdout + result.stderr


@pytest.mark.parametrize("variable", sorted(PRODUCTION))
def test_each_missing_production_variable_gives_one_line_and_exit_2(variable: str) -> None:
    env = clean_env(**{k: v for k, v in PRODUCTION.items() if k != variable})
    for command in ("check-config", "serve"):
        result = run(command, env=env)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"messenger-gw: configuration error: {variable}: is required")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MESSENGER_GW_LISTEN", "nonsense"),
        ("MESSENGER_GW_REDIS_URL", "mysql://root:hunter2@db"),
        ("MESSENGER_GW_OPENIM_API_URL", "openim"),
        ("MESSENGER_GW_OPENIM_WS_URL", "http://x"),
        ("MESSENGER_GW_OPENIM_READ_TIMEOUT", "soon"),
    ],
)
def test_each_malformed_variable_gives_one_line_and_exit_2(variable: str, value: str) -> None:
    result = run("serve", env=clean_env(**PRODUCTION | {variable: value}))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"messenger-gw: configuration error: {variable}: ")
    assert "hunter2" not in result.stderr


@pytest.fixture
def dev_gateway() -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    gateway, sandbox = f"{LOOPBACK}:{free_port()}", f"{LOOPBACK}:{free_port()}"
    env = clean_env(
        MESSENGER_GW_LISTEN=gateway,
        MESSENGER_GW_DEV_SANDBOX_LISTEN=sandbox,
        MESSENGER_GW_DEV_SANDBOX_WS_LISTEN=f"{LOOPBACK}:{free_port()}",
    )
    process = subprocess.Popen([*COMMAND, "dev"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process, f"http://{gateway}", f"http://{sandbox}"
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)  # also closes the pipes, whatever the test did


@pytest.mark.slow
def test_dev_mode_serves_green_probes_and_stops_cleanly(
    dev_gateway: tuple[subprocess.Popen[str], str, str],
) -> None:
    process, gateway, sandbox = dev_gateway
    deadline = time.monotonic() + 20
    status, body = 0, dict[str, object]()
    while time.monotonic() < deadline:
        try:
            status, body = get(gateway + "/readyz")
        except OSError:
            status = 0
        if status == 200:
            break
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.1)
    assert (status, body) == (200, {"status": "ready", "checks": {"store": "ok", "openim": "ok"}})
    assert get(gateway + "/healthz") == (200, {"status": "ok"})

    run_readme_client_steps(gateway)

    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert f"gateway         {gateway}" in stdout
    assert f"OpenIM sandbox  {sandbox}" in stdout
    assert "Try it:" in stdout
    assert '"msg":"draining"' in stderr.replace(" ", "")


README = Path(__file__).parent.parent / "README.md"


def readme_client_steps() -> list[list[str]]:
    """The README's `messenger-gw client` commands, exactly as written (comments dropped)."""
    steps = []
    for line in README.read_text().splitlines():
        if line.startswith(".venv/bin/messenger-gw client "):
            steps.append(shlex.split(line.split("#", 1)[0])[2:])
    return steps


def run_readme_client_steps(gateway: str) -> None:
    steps = readme_client_steps()
    assert [step[0] for step in steps] == ["handshake", "login", *["call"] * 5, "logout"]  # /auth, 2 /im, 2 /stickers
    with tempfile.TemporaryDirectory() as state_dir:
        where = ["--url", gateway, "--state", f"{state_dir}/session.json"]
        outputs = []
        for step in steps:
            result = subprocess.run(
                [*COMMAND, "client", *where, *step], capture_output=True, text=True, timeout=30, check=False
            )
            assert result.returncode == 0, (step, result.stderr)
            outputs.append(result.stdout)
    handshake, login, session, self_info, sent, packs, pack, _ = outputs
    assert len(orjson.loads(handshake)["sessionId"]) == 22
    assert orjson.loads(login)["userID"] == "alice"
    assert orjson.loads(login)["imToken"].count(".") == 2
    assert orjson.loads(login)["apiAddr"] == gateway + "/im", "what the OpenIM SDK takes as its apiAddr"
    assert orjson.loads(session)["userID"] == "alice"
    assert orjson.loads(self_info)["data"]["userID"] == "alice"
    assert orjson.loads(sent)["errCode"] == 0
    assert len(orjson.loads(sent)["data"]["serverMsgID"]) == 32
    assert [p["id"] for p in orjson.loads(packs)["packs"]] == ["twemoji-hello"], "dev mode's example pack"
    assert len(orjson.loads(pack)["stickers"]) == 6
    admin = {"Authorization": "Bearer dev-admin-key"}
    request = urllib.request.Request(gateway + "/admin/users/alice", headers=admin)  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback test server
        assert orjson.loads(response.read())["user"]["userID"] == "alice"


def test_address_in_use_is_a_clear_error() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(
            MESSENGER_GW_LISTEN=f"{LOOPBACK}:{free_port()}",
            MESSENGER_GW_DEV_SANDBOX_LISTEN=f"{LOOPBACK}:{port}",
            MESSENGER_GW_DEV_SANDBOX_WS_LISTEN=f"{LOOPBACK}:{free_port()}",
        )
        result = run("dev", env=env)
    assert result.returncode == 1
    assert "messenger-gw: cannot start:" in result.stderr
