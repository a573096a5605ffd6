"""XEP-0474 SCRAM downgrade protection: the h= attribute of the server-first-message."""

from __future__ import annotations

import base64

import pytest

from tests.proto.transcript import Transcript
from xmppauth.proto.sasl import ScramClient
from xmppauth.proto.xep0474_ssdp import ssdp_attribute

BINDINGS = {"tls-server-end-point": b"E" * 32, "tls-exporter": b"X" * 32}


def test_the_worked_example_of_the_xep() -> None:
    # XEP-0474 §"Full Example": SHA-1 of 'SCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS\x1ftls-exporter\x1etls-server-end-point'
    offered = ("SCRAM-SHA-1-PLUS", "SCRAM-SHA-1")  # any order: the list is sorted
    assert ssdp_attribute("SCRAM-SHA-1-PLUS", offered, BINDINGS) == "h=G6k/rBLDqgOhRRaCuuatSDFkJ08="


def test_without_channel_binding_types_no_separator_is_added() -> None:
    import hashlib

    expected = base64.b64encode(hashlib.sha256(b"PLAIN\x1eSCRAM-SHA-256").digest()).decode()
    assert ssdp_attribute("SCRAM-SHA-256", ("SCRAM-SHA-256", "PLAIN"), {}) == f"h={expected}"


def advertised(out: str, container: str) -> tuple[list[str], list[str]]:
    """What a client reads from the features: the mechanisms of one profile and the CB types."""
    section = out.split(f"<{container} ", 1)[1].split(f"</{container}>", 1)[0]
    mechanisms = [m.split("<", 1)[0] for m in section.split("<mechanism>")[1:]]
    cb = [c.split("'", 1)[0] for c in out.split("<channel-binding type='")[1:]]
    return mechanisms, cb


def client_hash(hash_name: str, mechanisms: list[str], cb: list[str]) -> str:
    """The client side of XEP-0474 §4.2, written independently of the server code."""
    import hashlib

    text = "\x1e".join(sorted(mechanisms))
    if cb:
        text += "\x1f" + "\x1e".join(sorted(cb))
    return base64.b64encode(hashlib.new(hash_name, text.encode()).digest()).decode()


@pytest.mark.parametrize(
    ("profile", "auth"),
    [
        (
            "mechanisms",
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{ir}</auth>",
        ),
        (
            "authentication",
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-256'><initial-response>{ir}</initial-response></authenticate>",
        ),
    ],
)
def test_a_client_detects_a_stripped_mechanism_list(profile: str, auth: str) -> None:
    t = Transcript.tcp(secure=True, bindings=BINDINGS)
    t.client(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
    )
    mechanisms, cb = advertised(t.output().decode(), profile)
    client = ScramClient("SHA-256", "alice", "wonderland")
    t.client(auth.format(ir=base64.b64encode(client.first()).decode()))
    challenge = t.output().decode()
    server_first = base64.b64decode(challenge.split(">", 1)[1].split("<", 1)[0])
    client.final(server_first)
    h = client.server_first_attributes["h"]
    # what the server really advertised matches ...
    assert h == client_hash("sha256", mechanisms, cb)
    # ... and what a man in the middle would have shown instead does not
    stripped = [m for m in mechanisms if not m.endswith("-PLUS")]
    assert h != client_hash("sha256", stripped, [])
    assert h != client_hash("sha256", mechanisms, ["tls-server-end-point"])
