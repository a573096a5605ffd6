from __future__ import annotations

import pytest

from xmppauth.proto.jid import JID, InvalidJID


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost", JID(None, "localhost")),
        ("Alice@LocalHost", JID("alice", "localhost")),
        ("alice@localhost/Phone/2", JID("alice", "localhost", "Phone/2")),
        ("alice@localhost.", JID("alice", "localhost")),
    ],
)
def test_it_parses_and_prepares(text: str, expected: JID) -> None:
    assert JID.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "@localhost",
        "alice@",
        "alice@localhost/",
        "a b@localhost",
        "a@b@c",
        "x@localhost/\u0007",
        "a" * 1024 + "@x",
    ],
)
def test_it_refuses_invalid_jids(text: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(text)


def test_str_and_bare_round_trip() -> None:
    jid = JID.parse("alice@localhost/phone")
    assert str(jid) == "alice@localhost/phone"
    assert str(jid.bare) == "alice@localhost"
    assert jid.bare.is_bare
    assert not jid.is_bare
