"""The JavaScript client (clients/js): its own tests, Node's test runner against ``messenger-gw dev``.

``signing.test.mjs`` checks the signer and the key agreement byte for byte against the gateway's
Python code; ``client.test.mjs`` runs the handshake, login, calls, logout and session renewal
(expired, revoked, banned, refused) against a real dev gateway; ``types.test.mjs`` compiles an
app's use of the package against its shipped declarations.
"""

from __future__ import annotations

import pytest

from tests.clients.node_tests import CHECKOUT, require, run_node_tests

JS_CLIENT = CHECKOUT / "clients" / "js"
TEST_FILES = sorted(path.name for path in (JS_CLIENT / "test").glob("*.test.mjs"))

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("test_file", TEST_FILES)
async def test_the_js_client_passes_its_node_tests(test_file: str) -> None:
    require(JS_CLIENT / "dist" / "index.js", "The JavaScript client's build")
    await run_node_tests(JS_CLIENT, f"test/{test_file}", limit=120)
