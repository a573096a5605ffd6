"""Catalogue rows 9, 12 and 17 (docs/security.md) on the wire: SCRAM downgrade protection (XEP-0474 ``h=``,
gs2 flag ``y`` refused when -PLUS was offered, the channel binding checked against this TLS session),
the SCRAM grammar and nonces, and stream-restart confusion after SASL success.

Every refused exchange carries a proof computed over exactly what was sent (tests/security/scram.py):
only the server's check of the grammar, the nonce or the binding can refuse it. The first test shows
the same client logging in when nothing is bent.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from lxml import etree

from tests.integration.rawclient import RawClient, client_header
from tests.integration.server import Server
from tests.security.helpers import closed_with, local_port, logged
from tests.security.scram import SASL, SASL2, Scram, attributes, b64, finish, server_signature, start

pytestmark = pytest.mark.integration

BIND = "urn:ietf:params:xml:ns:xmpp-bind"
MECHANISMS = ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def tls_stream(server: Server) -> RawClient:
    client = RawClient(server.c2s_tls, direct_tls=True)
    client.open_stream()
    return client


def refused(reply: bytes) -> bool:
    """A failure that comes from checking the exchange (not a guessing limit's unchecked refusal)."""
    return b"<failure" in reply and b"<success" not in reply and b"temporary-auth-failure" not in reply


# ---------------------------------------------------------------------------------------- the control
@pytest.mark.parametrize("sasl2", [False, True], ids=["rfc6120", "sasl2"])
@pytest.mark.parametrize("mechanism", MECHANISMS + [m + "-PLUS" for m in MECHANISMS])
def test_an_honest_exchange_logs_in_and_the_server_proves_itself(
    server: Server, mechanism: str, sasl2: bool
) -> None:
    client = tls_stream(server)
    scram = Scram(mechanism, "alice", "wonderland")
    cb = b""
    if mechanism.endswith("-PLUS"):
        scram.gs2 = "p=tls-exporter,,"
        cb = client.channel_binding("tls-exporter")
    server_first = start(client, scram, sasl2=sasl2)
    assert server_first.startswith(f"r={scram.nonce}")
    assert len(attributes(server_first)["r"]) > len(scram.nonce)  # the server added its part
    assert int(attributes(server_first)["i"]) >= 4096  # RFC 5802 §5.1, RFC 7677 §4
    final, expected = scram.final(server_first, cb_data=cb)
    success = finish(client, final, sasl2=sasl2)
    assert b"<success" in success, success
    assert server_signature(success, sasl2=sasl2) == expected
    client.close()


# ---------------------------------------------------------------------------------------- row 12
def test_a_client_final_message_replayed_on_another_connection_is_refused(server: Server) -> None:
    scram = Scram("SCRAM-SHA-256", "alice", "wonderland")
    first = tls_stream(server)
    first_server_first = start(first, scram)
    recorded, _ = scram.final(first_server_first)
    assert b"<success" in finish(first, recorded)
    first.close()
    # the same client-first-message (same client nonce), then the recorded final
    second = tls_stream(server)
    second_server_first = start(second, scram)
    assert attributes(second_server_first)["r"] != attributes(first_server_first)["r"]
    assert refused(finish(second, recorded))
    second.close()


@pytest.mark.parametrize(
    "bend",
    ["server-part-only", "other-client-prefix", "server-part-changed", "client-nonce-only"],
)
def test_a_combined_nonce_that_is_not_the_servers_is_refused(server: Server, bend: str) -> None:
    client = tls_stream(server)
    scram = Scram("SCRAM-SHA-256", "alice", "wonderland")
    server_first = start(client, scram)
    combined = attributes(server_first)["r"]
    server_part = combined[len(scram.nonce) :]
    nonce = {
        "server-part-only": server_part,
        "other-client-prefix": "X" + scram.nonce[1:] + server_part,
        "server-part-changed": scram.nonce + server_part[:-1] + ("A" if server_part[-1] != "A" else "B"),
        "client-nonce-only": scram.nonce,
    }[bend]
    final, _ = scram.final(server_first, nonce=nonce)
    assert refused(finish(client, final))
    client.close()


@pytest.mark.parametrize(
    ("gs2", "c"),
    [
        ("n,,", b64(b"y,,")),  # the flag changed after client-first
        ("n,,", b64(b"n,a=bob,")),  # an authzid slipped in
        ("n,a=alice,", b64(b"n,,")),  # an authzid dropped
        ("n,,", b64(b"p=tls-exporter,,")),
    ],
    ids=["flag-n-then-y", "authzid-added", "authzid-dropped", "flag-n-then-p"],
)
def test_a_channel_binding_attribute_that_is_not_the_gs2_header_is_refused(
    server: Server, gs2: str, c: str
) -> None:
    client = tls_stream(server)
    scram = Scram("SCRAM-SHA-256", "alice", "wonderland", gs2=gs2)
    final, _ = scram.final(start(client, scram), channel_binding=c)
    assert refused(finish(client, final))
    client.close()


@pytest.mark.parametrize(
    ("extra", "after_proof"),
    [
        (",m=mandatory-extension", ""),
        (",r=again", ""),
        ("", ",x=after-the-proof"),
        ("", ",p=AAAA"),
    ],
    ids=["m-extension", "duplicate-r", "attribute-after-proof", "second-proof"],
)
def test_a_client_final_message_against_the_grammar_is_refused(
    server: Server, extra: str, after_proof: str
) -> None:
    client = tls_stream(server)
    scram = Scram("SCRAM-SHA-256", "alice", "wonderland")
    final, _ = scram.final(start(client, scram), extra=extra, after_proof=after_proof)
    assert refused(finish(client, final))
    client.close()


@pytest.mark.parametrize(
    "first",
    [
        "n,,m=ext,n=alice,r=abcdefgh",
        "n,,n=alice,r=abcdefgh,m=ext",
        "n,,r=abcdefgh,n=alice",
        "n,,n=alice,r=abc,def",
    ],
    ids=["m-first", "m-extension", "wrong-order", "comma-in-nonce"],
)
def test_a_client_first_message_against_the_grammar_is_refused(server: Server, first: str) -> None:
    client = tls_stream(server)
    client.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{b64(first.encode())}</auth>")
    reply = client.read_until(rb"</challenge>|</failure>|<failure[^>]*/>")
    assert refused(reply), reply
    client.close()


def test_an_unknown_extension_in_client_final_is_signed_and_therefore_checked(server: Server) -> None:
    """RFC 5802 allows unknown extensions before the proof; they are part of AuthMessage, so one added
    on the way breaks the proof."""
    client = tls_stream(server)
    scram = Scram("SCRAM-SHA-256", "alice", "wonderland")
    server_first = start(client, scram)
    signed, _ = scram.final(server_first, extra=",x=one")
    tampered = signed.replace(b",x=one,", b",x=two,")
    assert refused(finish(client, tampered))
    client.close()
    client = tls_stream(server)
    scram = Scram("SCRAM-SHA-256", "alice", "wonderland")
    signed, _ = scram.final(start(client, scram), extra=",x=one")
    assert b"<success" in finish(client, signed)
    client.close()


# ---------------------------------------------------------------------------------------- row 9
def advertised(features: bytes, profile: str) -> tuple[list[str], list[str]]:
    """The mechanisms of one profile (``mechanisms``: RFC 6120, ``authentication``: SASL2) and the
    XEP-0440 channel-binding types, as a client reads them."""
    xml = features[features.index(b"<stream:features>") :].replace(b"stream:features", b"features")
    root = etree.fromstring(xml)
    section = next(child for child in root if etree.QName(child).localname == profile)
    mechanisms = [m.text or "" for m in section if etree.QName(m).localname == "mechanism"]
    types = [el.get("type", "") for el in root.iter("{urn:xmpp:sasl-cb:0}channel-binding")]
    return mechanisms, types


def ssdp(digest: str, mechanisms: list[str], types: list[str]) -> str:
    """XEP-0474 §4: what the client computes from the features it saw."""
    text = "\x1e".join(sorted(mechanisms))
    if types:
        text += "\x1f" + "\x1e".join(sorted(types))
    return b64(hashlib.new(digest, text.encode()).digest())


@pytest.mark.parametrize("sasl2", [False, True], ids=["rfc6120", "sasl2"])
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512-PLUS"])
def test_the_server_first_message_carries_the_hash_of_what_was_really_advertised(
    server: Server, mechanism: str, sasl2: bool
) -> None:
    client = RawClient(server.c2s_tls, direct_tls=True)
    mechanisms, types = advertised(client.open_stream(), "authentication" if sasl2 else "mechanisms")
    assert any(m.endswith("-PLUS") for m in mechanisms)
    assert types
    scram = Scram(mechanism, "alice", "wonderland")
    if mechanism.endswith("-PLUS"):
        scram.gs2 = "p=tls-exporter,,"
    h = attributes(start(client, scram, sasl2=sasl2))["h"]
    assert h == ssdp(scram.digest, mechanisms, types)
    # what a man in the middle stripping -PLUS (and the binding types) would have shown does not match
    assert h != ssdp(scram.digest, [m for m in mechanisms if not m.endswith("-PLUS")], [])
    assert h != ssdp(scram.digest, mechanisms, [t for t in types if t != "tls-exporter"])
    client.close()


@pytest.mark.parametrize("sasl2", [False, True], ids=["rfc6120", "sasl2"])
def test_gs2_flag_y_is_refused_when_plus_was_offered(server: Server, sasl2: bool) -> None:
    """RFC 5802 §6: "y" says the client supports channel binding but thinks the server does not; the
    server offered -PLUS, so someone removed it on the way."""
    client = tls_stream(server)
    scram = Scram("SCRAM-SHA-256", "alice", "wonderland", gs2="y,,")
    first = b64(scram.client_first())
    if sasl2:
        client.send(
            f"<authenticate xmlns='{SASL2}' mechanism='SCRAM-SHA-256'><initial-response>{first}"
            "</initial-response></authenticate>"
        )
    else:
        client.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>")
    reply = client.read_until(rb"</failure>|<failure[^>]*/>|</challenge>")
    assert b"<failure" in reply, reply
    assert b"<not-authorized" in reply
    assert b"possible downgrade" in reply
    client.close()


@pytest.mark.parametrize("sasl2", [False, True], ids=["rfc6120", "sasl2"])
@pytest.mark.parametrize("cb_type", ["tls-exporter", "tls-server-end-point"])
def test_a_channel_binding_not_of_this_tls_session_is_refused(
    server: Server, sasl2: bool, cb_type: str
) -> None:
    other = tls_stream(server)
    stolen = other.channel_binding("tls-exporter")
    client = tls_stream(server)
    scram = Scram("SCRAM-SHA-256-PLUS", "alice", "wonderland", gs2=f"p={cb_type},,")
    data = stolen if cb_type == "tls-exporter" else hashlib.sha256(b"another certificate").digest()
    final, _ = scram.final(start(client, scram, sasl2=sasl2), cb_data=data)
    assert refused(finish(client, final, sasl2=sasl2))
    other.close()
    client.close()


# ---------------------------------------------------------------------------------------- row 17 (SASL)
def scram_login(client: RawClient, user: str = "alice", password: str = "wonderland") -> tuple[Scram, bytes]:
    scram = Scram("SCRAM-SHA-256", user, password)
    final, _ = scram.final(start(client, scram))
    return scram, final


def test_a_stanza_pipelined_behind_the_last_sasl_message_is_discarded_by_the_restart(server: Server) -> None:
    client = tls_stream(server)
    _, final = scram_login(client)
    early = f"<iq type='set' id='early'><bind xmlns='{BIND}'><resource>early</resource></bind></iq>"
    client.send(f"<response xmlns='{SASL}'>{b64(final)}</response>{early}")
    assert b"<success" in client.read_until(rb"</success>")
    features = client.open_stream()  # the restart
    assert f"<bind xmlns='{BIND}'/>".encode() in features, features  # still to be done: nothing bound
    client.send(f"<iq type='set' id='b2'><bind xmlns='{BIND}'><resource>late</resource></bind></iq>")
    reply = client.read_until(rb"</iq>")
    assert b"alice@localhost/late" in reply, reply
    assert b"early" not in reply + client.read_for(0.3)
    client.close()


def test_a_stanza_sent_after_success_without_a_restart_is_never_handled(server: Server) -> None:
    client = tls_stream(server)
    _, final = scram_login(client)
    assert b"<success" in finish(client, final)
    client.send(f"<iq type='set' id='norestart'><bind xmlns='{BIND}'/></iq>")
    out = client.read_to_close()
    assert b"norestart" not in out
    assert b"<stream:error>" in out
    client.close()


def test_each_restart_starts_a_new_parser_and_a_new_stream(server: Server) -> None:
    """An XML declaration is allowed only at the very start of a parser's input: the server takes one
    with every restart header, and gives every restart its own stream id."""
    client = RawClient(server.c2s)
    ids = [re.search(rb" id='([^']+)'", client.open_stream())]
    client.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    client.read_until(rb"<proceed[^>]*/>")
    client.start_tls()
    ids.append(re.search(rb" id='([^']+)'", client.open_stream()))
    _, final = scram_login(client)
    assert b"<success" in finish(client, final)
    client.send(client_header())  # declaration included
    after = client.read_until(rb"</stream:features>")
    ids.append(re.search(rb" id='([^']+)'", after))
    assert all(ids)
    assert len({m.group(1) for m in ids if m}) == 3
    client.close()


@pytest.mark.parametrize("profile", ["rfc6120", "sasl2", "sasl2-pipelined"])
def test_authenticating_again_after_success_is_a_policy_violation(server: Server, profile: str) -> None:
    client = tls_stream(server)
    port = local_port(client, server)
    plain_bob = b64(b"\0bob\0builder")
    if profile == "rfc6120":
        _, final = scram_login(client)
        assert b"<success" in finish(client, final)
        client.open_stream()
        client.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{plain_bob}</auth>")
    else:
        client.authenticate_plain("alice", "wonderland", inline="<bind xmlns='urn:xmpp:bind:0'/>")
        if profile == "sasl2":
            assert b"<success" in client.read_until(rb"</stream:features>")
        client.send(
            f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>{plain_bob}"
            "</initial-response></authenticate>"
        )
    assert closed_with(client) == "policy-violation"
    client.close()
    assert "already authenticated" in logged(server, port, "stream error policy-violation")
    assert "as bob" not in "\n".join(
        line for line in server.log_text()[port.since :].splitlines() if f"127.0.0.1:{port} " in line
    )


def test_the_scram_helper_detects_a_wrong_password(server: Server) -> None:
    """The attacks' own control: the hand-written client's proof really depends on the password."""
    client = tls_stream(server)
    scram = Scram("SCRAM-SHA-256", "alice", "not-the-password")
    final, _ = scram.final(start(client, scram))
    assert refused(finish(client, final))
    client.close()
