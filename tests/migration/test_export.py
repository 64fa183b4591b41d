"""Reading an export: a line is a record, or its line and why it is bad."""

from __future__ import annotations

from pathlib import Path

from messenger_gw.migration import BadLine
from messenger_gw.migration.export import User, read


def test_a_user_id_a_login_would_refuse_is_a_bad_line(tmp_path: Path) -> None:
    users = tmp_path / "users.jsonl"
    users.write_text(
        '{"userID": "alice", "nickname": "Alice"}\n'
        + '{"userID": "%s", "nickname": "Too long"}\n' % ("u" * 65)
        + '{"userID": "bob-1", "nickname": "Bob"}\n'
    )
    alice, too_long, hyphen = list(read(users, "users"))
    assert isinstance(alice, User)
    assert alice.user_id == "alice"
    for bad in (too_long, hyphen):
        assert isinstance(bad, tuple)
        assert isinstance(bad[1], BadLine)
        assert "not a userID a login accepts" in str(bad[1])
