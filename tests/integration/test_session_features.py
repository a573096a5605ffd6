"""Stream management, carbons, CSI and the offline store over real sockets."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.integration.rawclient import RawClient
from tests.integration.server import Server, running_server

pytestmark = pytest.mark.integration

SM = "urn:xmpp:sm:3"
UA = "4a8e7c52-90d1-4f4b-a0b3-7e6f5d4c3b2a"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        tmp_path_factory.mktemp("server"), XMPP_SM_RESUME_SECONDS="2", XMPP_SM_ACK_REQUEST_SECONDS="1"
    ) as srv:
        yield srv


def sasl2_plain(client: RawClient, user: str, password: str, inline: str) -> bytes:
    client.open_stream()
    client.authenticate_plain(user, password, ua=UA, software="test", inline=inline)
    return client.read_until(rb"</success>(<stream:features>.*?</stream:features>)?|</failure>")


def bodies(data: bytes) -> list[str]:
    return [b.decode() for b in re.findall(rb"<body>([^<]*)</body>", data)]


def test_a_dropped_connection_resumes_inline_and_loses_nothing(server: Server) -> None:
    phone = RawClient(server.c2s_tls, direct_tls=True)
    reply = sasl2_plain(
        phone,
        "alice",
        "wonderland",
        "<bind xmlns='urn:xmpp:bind:0'><tag>phone</tag><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>",
    )
    previd = re.search(rb"<enabled xmlns='urn:xmpp:sm:3' id='([^']+)' resume='true'", reply)
    assert previd is not None, reply
    jid = reply.split(b"<authorization-identifier>")[1].split(b"<")[0].decode()
    phone.send("<presence/>")
    phone.read_until(rb"<presence[^>]*/>")

    bob = RawClient(server.c2s)
    bob.login("bob", "builder", "desk")
    for i in range(3):
        bob.send(f"<message to='{jid}' type='chat'><body>before {i}</body></message>")
    got = phone.read_until(rb"before 2</body>.*?</message>")
    assert bodies(got) == ["before 0", "before 1", "before 2"]
    # handled: its own presence and the first message; the other two are lost with the connection
    phone.send(f"<a xmlns='{SM}' h='2'/>")

    phone.sock.close()  # the network goes away without a word
    time.sleep(0.3)
    for i in range(3):
        bob.send(f"<message to='{jid}' type='chat'><body>during {i}</body></message>")
    time.sleep(0.3)

    back = RawClient(server.c2s_tls, direct_tls=True)
    reply = sasl2_plain(
        back,
        "alice",
        "wonderland",
        f"<resume xmlns='{SM}' previd='{previd.group(1).decode()}' h='2'/><bind xmlns='urn:xmpp:bind:0'><tag>phone</tag></bind>",
    )
    assert b"<resumed xmlns='urn:xmpp:sm:3'" in reply, reply
    assert b"<bound" not in reply
    assert b"<stream:features" not in reply
    assert f"<authorization-identifier>{jid}</authorization-identifier>".encode() in reply
    replay = back.read_for(0.5)
    # every message exactly once: the two unacknowledged ones from before, then the three sent meanwhile
    assert bodies(replay) == ["before 1", "before 2", "during 0", "during 1", "during 2"]
    # and the session lives on: new messages arrive on the resumed stream
    bob.send(f"<message to='{jid}' type='chat'><body>after</body></message>")
    assert bodies(back.read_until(rb"after</body>.*?</message>")) == ["after"]
    back.close()
    bob.close()


def test_a_session_that_never_comes_back_keeps_its_messages_offline(server: Server) -> None:
    carol = RawClient(server.c2s)
    carol.login("carol", "singer", "tablet")
    carol.send(f"<enable xmlns='{SM}' resume='true'/>")
    carol.read_until(rb"<enabled[^>]*/>")
    carol.send("<presence/>")
    carol.read_until(rb"<presence[^>]*/>")
    bob = RawClient(server.c2s)
    bob.login("bob", "builder", "desk2")
    bob.send("<message to='carol@localhost/tablet' type='chat'><body>are you there?</body></message>")
    carol.read_until(rb"are you there\?")
    carol.sock.close()  # gone for good; nothing was acknowledged
    time.sleep(3.5)  # XMPP_SM_RESUME_SECONDS=2 in this server
    again = RawClient(server.c2s)
    again.login("carol", "singer", "laptop")
    again.send("<presence/>")
    stored = again.read_until(rb"are you there\?.*?</message>")
    assert b'<delay xmlns="urn:xmpp:delay"' in stored
    assert b'to="carol@localhost"' in stored
    again.close()
    bob.close()


def test_carbons_copy_chats_to_the_other_resources(server: Server) -> None:
    desk = RawClient(server.c2s)
    desk.login("alice", "wonderland", "desk")
    desk.send("<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
    desk.read_until(rb"id=\"c\"[^>]*/>")
    phone = RawClient(server.c2s)
    phone.login("alice", "wonderland", "phone-c")
    bob = RawClient(server.c2s)
    bob.login("bob", "builder", "c")
    # alice's phone writes to bob: her desk gets a <sent/> copy
    phone.send("<message to='bob@localhost/c' type='chat'><body>hi bob</body></message>")
    sent = desk.read_until(rb"</forwarded></sent></message>")
    assert b"<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>" in sent
    assert b"hi bob" in sent
    # bob answers alice's phone: her desk gets a <received/> copy
    bob.send("<message to='alice@localhost/phone-c' type='chat'><body>hi alice</body></message>")
    received = desk.read_until(rb"</forwarded></received></message>")
    assert b"<received xmlns='urn:xmpp:carbons:2'>" in received
    assert b"hi alice" in received
    # a private message is not copied
    phone.send(
        "<message to='bob@localhost/c' type='chat'><body>secret</body><private xmlns='urn:xmpp:carbons:2'/></message>"
    )
    bob.read_until(rb"secret")
    assert b"secret" not in desk.quiet(0.3)
    for c in (desk, phone, bob):
        c.close()


def test_an_inactive_client_gets_messages_at_once_and_presence_later(server: Server) -> None:
    quiet = RawClient(server.c2s)
    quiet.login("carol", "singer", "quiet")
    quiet.send("<presence/>")
    quiet.read_until(rb"<presence[^>]*/>")
    quiet.send("<inactive xmlns='urn:xmpp:csi:0'/>")
    other = RawClient(server.c2s)
    other.login("carol", "singer", "other")
    other.send("<presence/>")  # broadcast to carol's resources: can wait
    time.sleep(0.3)
    assert b"carol@localhost/other" not in quiet.quiet(0.3)
    bob = RawClient(server.c2s)
    bob.login("bob", "builder", "csi")
    bob.send("<message to='carol@localhost/quiet' type='chat'><body>now</body></message>")
    urgent = quiet.read_until(rb"now</body>.*?</message>")
    # the held presence comes first, so order is kept, then the message
    assert urgent.index(b"carol@localhost/other") < urgent.index(b"now")
    for c in (quiet, other, bob):
        c.close()


def test_a_quiet_session_is_asked_for_an_acknowledgement(server: Server) -> None:
    client = RawClient(server.c2s)
    client.login("carol", "singer", "quiet-sm")
    client.send(f"<enable xmlns='{SM}'/>")
    client.read_until(rb"<enabled[^>]*/>")
    client.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    client.read_until(rb"id=\"p\"[^>]*/>")
    # one stanza is below the every-five rule; the timer (1 s in this server) asks anyway
    started = time.monotonic()
    client.read_until(rb"<r xmlns='urn:xmpp:sm:3'/>", timeout=5)
    assert time.monotonic() - started < 4
    client.send(f"<a xmlns='{SM}' h='1'/>")
    assert b"<r " not in client.quiet(1.5)  # acknowledged: no more requests
    client.close()
