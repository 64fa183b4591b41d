"""The demo web chat (examples/web-chat) in a real headless Chromium, driven by playwright-core.

``examples/web-chat/test/web-chat.test.mjs`` starts ``messenger-gw dev`` (with a CORS allowlist)
and Chromium, and checks: alice and bob chatting in real time, a message shown on the other page
within a second, both conversation lists following, the SDK through the gateway's /im and /ws;
the browser's preflights; a session that expires renewed by the client without the page
noticing; a banned user's page showing that it was logged out; a second page of a user logging
the first one out; a page without WebCrypto (plain HTTP off localhost) logging in with the
client's noble fallback; a page from an origin not in the allowlist unable to call the gateway.
Screenshots of the pages are kept in examples/web-chat/test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.clients.node_tests import CHECKOUT, require, run_node_tests

WEB_CHAT = CHECKOUT / "examples" / "web-chat"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))

pytestmark = pytest.mark.slow


async def test_the_web_chat_works_in_chromium() -> None:
    require(WEB_CHAT / "public" / "build" / "app.js", "The web chat's build")
    require(WEB_CHAT / "node_modules" / "playwright-core", "playwright-core (npm ci in examples/web-chat)")
    require(CHROMIUM, "Chromium (Debian's chromium package)")
    await run_node_tests(WEB_CHAT, "test/web-chat.test.mjs", limit=180)
