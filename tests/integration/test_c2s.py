"""The whole server over real loopback sockets: real TLS, real clients (slixmpp, WebSocket), real bad input."""

from __future__ import annotations

import asyncio
import re
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import slixmpp
import websockets

from tests.integration.rawclient import RawClient, client_header, parse_stream_error
from tests.integration.server import ACCOUNTS, Server, running_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("server")) as srv:
        yield srv


# ---------------------------------------------------------------------------------------- slixmpp
class Bot(slixmpp.ClientXMPP):  # type: ignore[misc]
    def __init__(self, jid: str, password: str, cert: Path, *, direct_tls: bool) -> None:
        super().__init__(jid, password)
        self.ca_certs = cert
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.register_plugin("xep_0199")
        self.online = asyncio.get_event_loop().create_future()
        self.inbox: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        self.add_event_handler("session_start", self._started)
        self.add_event_handler("failed_auth", lambda *_: self._fail("authentication failed"))
        self.add_event_handler("message", self.inbox.put_nowait)

    def _fail(self, why: str) -> None:
        if not self.online.done():
            self.online.set_exception(AssertionError(why))

    def _started(self, _event: object) -> None:
        self.send_presence()
        if not self.online.done():
            self.online.set_result(True)


async def _bot(server: Server, user: str, *, direct_tls: bool) -> Bot:
    bot = Bot(f"{user}@localhost/slix", ACCOUNTS[user], server.cert, direct_tls=direct_tls)
    bot.connect("127.0.0.1", server.c2s_tls if direct_tls else server.c2s)
    await asyncio.wait_for(bot.online, 20)
    return bot


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
async def test_two_slixmpp_clients_log_in_and_chat(server: Server, direct_tls: bool) -> None:
    alice = await _bot(server, "alice", direct_tls=direct_tls)
    bob = await _bot(server, "bob", direct_tls=direct_tls)
    try:
        assert str(alice.boundjid) == "alice@localhost/slix"
        alice.send_message(mto="bob@localhost/slix", mbody="hello bob", mtype="chat")
        got = await asyncio.wait_for(bob.inbox.get(), 10)
        assert got["body"] == "hello bob"
        assert str(got["from"]) == "alice@localhost/slix"
        # and back, to the bare JID this time (RFC 6121 §8.5.2: available resources)
        bob.send_message(mto="alice@localhost", mbody="hi alice", mtype="chat")
        got = await asyncio.wait_for(alice.inbox.get(), 10)
        assert got["body"] == "hi alice"
        assert str(got["from"]) == "bob@localhost/slix"
        pong = await alice.plugin["xep_0199"].ping(jid="localhost", timeout=10)
        assert pong is not None
    finally:
        alice.disconnect()
        bob.disconnect()
        await asyncio.sleep(0.2)


async def test_slixmpp_with_a_wrong_password_is_refused(server: Server) -> None:
    bot = Bot("alice@localhost/x", "wrong", server.cert, direct_tls=False)
    bot.connect("127.0.0.1", server.c2s)
    with pytest.raises(AssertionError, match="authentication failed"):
        await asyncio.wait_for(bot.online, 20)
    bot.disconnect()


# ---------------------------------------------------------------------------------------- WebSocket
async def test_a_websocket_client_logs_in(server: Server) -> None:
    import base64

    from xmppauth.proto.sasl import ScramClient

    url = f"ws://127.0.0.1:{server.http}/xmpp-websocket"
    async with websockets.connect(url, subprotocols=["xmpp"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "xmpp"
        await ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
        assert str(await ws.recv()).startswith("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'")
        features = str(await ws.recv())
        assert "<mechanism>SCRAM-SHA-256</mechanism>" in features
        assert "-PLUS" not in features  # no channel binding through a WebSocket
        client = ScramClient("SHA-256", "alice", "wonderland")
        first = base64.b64encode(client.first()).decode()
        await ws.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>"
        )
        challenge = str(await ws.recv())
        server_first = base64.b64decode(challenge.split(">", 1)[1].split("<", 1)[0])
        final = base64.b64encode(client.final(server_first)).decode()
        await ws.send(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{final}</response>")
        assert str(await ws.recv()).startswith("<success")
        await ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
        await ws.recv()
        assert "urn:ietf:params:xml:ns:xmpp-bind" in str(await ws.recv())
        await ws.send(
            "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<resource>web</resource></bind></iq>"
        )
        assert "<jid>alice@localhost/web</jid>" in str(await ws.recv())
        await ws.send("<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        pong = str(await ws.recv())
        assert 'type="result"' in pong
        assert 'id="p"' in pong
        await ws.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
        assert str(await ws.recv()) == "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"


async def test_a_websocket_without_the_xmpp_subprotocol_is_refused(server: Server) -> None:
    url = f"ws://127.0.0.1:{server.http}/xmpp-websocket"
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        async with websockets.connect(url):
            pass
    assert info.value.response.status_code == 403


async def test_websocket_and_tcp_sessions_exchange_messages(server: Server) -> None:
    bob = RawClient(server.c2s)
    bob.login("bob", "builder", "tcp")
    bob.send("<presence/>")
    bob.read_until(rb"<presence[^>]*/>")
    url = f"ws://127.0.0.1:{server.http}/xmpp-websocket"
    async with websockets.connect(url, subprotocols=["xmpp"]) as ws:  # type: ignore[list-item]
        import base64

        await ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
        await ws.recv()
        await ws.recv()
        token = base64.b64encode(b"\0carol\0singer").decode()
        await ws.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        assert str(await ws.recv()).startswith("<success")
        await ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
        await ws.recv()
        await ws.recv()
        await ws.send(
            "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
        )
        await ws.recv()
        await ws.send(
            "<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'><body>from the web</body></message>"
        )
        got = await asyncio.to_thread(bob.read_until, rb"</message>")
        assert b"from the web" in got
        assert b'from="carol@localhost/' in got
    bob.close()


# ---------------------------------------------------------------------------------------- channel binding
@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
@pytest.mark.parametrize("cb_type", ["tls-exporter", "tls-server-end-point"])
def test_scram_plus_with_the_right_binding_succeeds(server: Server, direct_tls: bool, cb_type: str) -> None:
    client = RawClient(server.c2s_tls if direct_tls else server.c2s, direct_tls=direct_tls)
    features = client.open_stream() if direct_tls else client.starttls()
    assert b"<mechanism>SCRAM-SHA-256-PLUS</mechanism>" in features
    assert f"<channel-binding type='{cb_type}'/>".encode() in features
    reply = client.scram("SCRAM-SHA-256-PLUS", "alice", "wonderland", cb_type=cb_type)
    assert reply.startswith(b"<success"), reply
    client.close()


@pytest.mark.parametrize("cb_type", ["tls-exporter", "tls-server-end-point"])
def test_scram_plus_with_a_wrong_binding_fails(server: Server, cb_type: str) -> None:
    client = RawClient(server.c2s)
    client.starttls()
    reply = client.scram("SCRAM-SHA-256-PLUS", "alice", "wonderland", cb_type=cb_type, cb_data=b"\x00" * 32)
    assert b"<not-authorized/>" in reply, reply
    client.close()


def test_a_binding_from_another_tls_session_fails(server: Server) -> None:
    other = RawClient(server.c2s)
    other.starttls()
    stolen = other.channel_binding("tls-exporter")
    client = RawClient(server.c2s)
    client.starttls()
    reply = client.scram("SCRAM-SHA-1-PLUS", "alice", "wonderland", cb_type="tls-exporter", cb_data=stolen)
    assert b"<not-authorized/>" in reply, reply
    other.close()
    client.close()


# ---------------------------------------------------------------------------------------- bad input, exact stream errors
def _after_tls(server: Server) -> RawClient:
    client = RawClient(server.c2s)
    client.starttls()
    return client


@pytest.mark.parametrize(
    ("before_tls", "payload", "condition"),
    [
        (
            True,
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdvbmRlcmxhbmQ=</auth>",
            "policy-violation",
        ),
        (True, b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>", "policy-violation"),
        (False, b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>", "not-authorized"),
        (False, b"<!-- a comment -->", "restricted-xml"),
        (False, b"<message><?pi x?></message>", "restricted-xml"),
        (False, b"<message>&xxe;</message>", "restricted-xml"),
        (False, b"<message><![CDATA[x]]></message>", "restricted-xml"),
        (False, b"<message>" + b"x" * 20_000 + b"</message>", "policy-violation"),
        (False, b"<a>" * 200, "policy-violation"),
        (False, b"<message></iq>", "not-well-formed"),
    ],
)
def test_bad_input_gets_its_exact_stream_error(
    server: Server, before_tls: bool, payload: bytes, condition: str
) -> None:
    if before_tls:
        client = RawClient(server.c2s)
        client.open_stream()
    else:
        client = _after_tls(server)
    client.send(payload)
    assert parse_stream_error(client.read_to_close()) == condition
    client.close()


@pytest.mark.parametrize(
    ("header", "condition"),
    [
        (client_header(to="example.org"), "host-unknown"),
        (
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>",
            "unsupported-version",
        ),
        (b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>]><stream:stream>", "restricted-xml"),
        (b"<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream>", "unsupported-encoding"),
        (
            b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
            "invalid-namespace",
        ),
    ],
)
def test_bad_stream_headers_get_their_exact_stream_error(
    server: Server, header: bytes, condition: str
) -> None:
    client = RawClient(server.c2s)
    client.send(header)
    assert parse_stream_error(client.read_to_close()) == condition
    client.close()


def test_bad_input_after_bind_gets_its_exact_stream_error(server: Server) -> None:
    client = RawClient(server.c2s)
    client.login("alice", "wonderland", "spoofer")
    client.send("<message from='bob@localhost/x' to='carol@localhost'><body>spoofed</body></message>")
    assert parse_stream_error(client.read_to_close()) == "invalid-from"
    client.close()


def test_a_non_stanza_after_bind_is_unsupported_stanza_type(server: Server) -> None:
    client = RawClient(server.c2s)
    client.login("alice", "wonderland", "odd")
    client.send("<foo xmlns='urn:example:foo'/>")
    assert parse_stream_error(client.read_to_close()) == "unsupported-stanza-type"
    client.close()


def test_a_message_to_an_offline_account_is_bounced_not_lost(server: Server) -> None:
    client = RawClient(server.c2s)
    client.login("alice", "wonderland", "b")
    client.send("<message to='nobody@localhost' id='m1' type='chat'><body>hello?</body></message>")
    reply = client.read_until(rb"</message>")
    assert b'type="error"' in reply
    assert b"<service-unavailable" in reply
    assert b'id="m1"' in reply
    client.close()


def test_binding_a_taken_resource_replaces_the_older_session(server: Server) -> None:
    first = RawClient(server.c2s)
    assert first.login("carol", "singer", "desk") == "carol@localhost/desk"
    second = RawClient(server.c2s)
    assert second.login("carol", "singer", "desk") == "carol@localhost/desk"
    assert parse_stream_error(first.read_to_close()) == "conflict"
    # the new session is the one that is routable
    bob = RawClient(server.c2s)
    bob.login("bob", "builder", "c")
    bob.send("<message to='carol@localhost/desk' type='chat'><body>which one?</body></message>")
    assert b"which one?" in second.read_until(rb"</message>")
    for c in (first, second, bob):
        c.close()


def test_the_admin_site_is_served(server: Server) -> None:
    """On its own listener (XMPP_ADMIN_HTTP: tests/security/test_portal.py has it 404 on the public one)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.admin_http}/admin/login/", timeout=10) as response:
        assert response.status == 200
        assert response.url.startswith(f"http://127.0.0.1:{server.admin_http}/signin/?next=")  # the portal's
        body = response.read()
        assert b'name="csrfmiddlewaretoken"' in body
        assert b'name="password"' in body
    with urllib.request.urlopen(
        f"http://127.0.0.1:{server.http}/static/admin/css/base.css", timeout=10
    ) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "path", ["/static/../manage.py", "/static/%2e%2e/settings.py", "/static/..%2fmanage.py"]
)
def test_a_static_path_out_of_the_static_files_is_a_bad_request_not_an_error(
    server: Server, path: str
) -> None:
    """Found by an outside attack: Django's static handler answered these with 500 and a traceback."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.http, timeout=10)
    conn.request("GET", path)  # sent as written: no client-side normalisation
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status in (400, 404), (response.status, body[:200])
    assert b"Traceback" not in body
    assert b"SECRET" not in body


def test_the_self_signed_certificate_names_the_domain(server: Server) -> None:
    ctx = ssl.create_default_context(cafile=str(server.cert))
    import socket

    with (
        socket.create_connection(("127.0.0.1", server.c2s_tls)) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.3", "TLSv1.2")


def test_preauth_timeout_closes_idle_connections(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv", accounts={}, XMPP_PREAUTH_TIMEOUT="1") as srv:
        client = RawClient(srv.c2s)
        client.open_stream()
        assert parse_stream_error(client.read_to_close(timeout=5)) == "connection-timeout"
        client.close()


# ---------------------------------------------------------------------------------------- SASL2 + Bind2
def _sasl2_login(client: RawClient, mech: str, user: str, password: str, ua: str) -> bytes:
    import base64
    import re

    from xmppauth.proto.sasl import ScramClient

    cb_type = "tls-exporter" if mech.endswith("-PLUS") else None
    scram = ScramClient(
        mech.removeprefix("SCRAM-").removesuffix("-PLUS"),
        user,
        password,
        cb_type=cb_type,
        cb_data=client.channel_binding(cb_type) if cb_type else b"",
    )
    first = base64.b64encode(scram.first()).decode()
    client.send(
        f"<authenticate xmlns='urn:xmpp:sasl:2' mechanism='{mech}'><initial-response>{first}</initial-response>"
        f"<user-agent id='{ua}'><software>rawclient</software></user-agent>"
        "<bind xmlns='urn:xmpp:bind:0'><tag>raw</tag></bind></authenticate>"
    )
    challenge = client.read_until(rb"</challenge>")
    server_first = base64.b64decode(re.search(rb">([^<]*)</challenge>", challenge).group(1))
    final = base64.b64encode(scram.final(server_first)).decode()
    client.send(f"<response xmlns='urn:xmpp:sasl:2'>{final}</response>")
    return client.read_until(rb"</success>.*?(<stream:features/>|</stream:features>)|</failure>")


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
def test_sasl2_with_bind2_and_channel_binding_over_tcp(server: Server, direct_tls: bool) -> None:
    client = RawClient(server.c2s_tls if direct_tls else server.c2s, direct_tls=direct_tls)
    features = client.open_stream() if direct_tls else client.starttls()
    assert b"<authentication xmlns='urn:xmpp:sasl:2'>" in features
    ua = "7d3c2f0e-1b1a-4c3e-8f5a-9b2d6e4f1a00"
    reply = _sasl2_login(client, "SCRAM-SHA-256-PLUS", "alice", "wonderland", ua)
    assert b"<success xmlns='urn:xmpp:sasl:2'>" in reply, reply
    # the archive's XEP-0313 <metadata/> (what earlier tests left in alice's archive), nothing else asked inline
    bound = rb"<bound xmlns='urn:xmpp:bind:0'><metadata xmlns=.urn:xmpp:mam:2.(/>|>.*?</metadata>)</bound>"
    assert re.search(bound, reply), reply
    jid = reply.split(b"<authorization-identifier>")[1].split(b"<")[0].decode()
    assert jid.startswith("alice@localhost/raw~")
    # no stream restart: stanzas flow at once, from the bound full JID
    client.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    pong = client.read_until(rb"<iq[^>]*/>")
    assert f'to="{jid}"'.encode() in pong
    assert b'type="result"' in pong
    # the same user agent reconnecting gets the same resource, and replaces the old session
    again = RawClient(server.c2s_tls, direct_tls=True)
    again.open_stream()
    reply2 = _sasl2_login(again, "SCRAM-SHA-1", "alice", "wonderland", ua)
    assert f"<authorization-identifier>{jid}</authorization-identifier>".encode() in reply2
    assert parse_stream_error(client.read_to_close()) == "conflict"
    client.close()
    again.close()


def test_a_sasl2_user_agent_is_recorded_as_the_accounts_client(server: Server) -> None:
    import base64

    ua = "0e2f6a3c-5b7d-4e21-9c8a-1f3e5d7b9a24"
    token = base64.b64encode(b"\0bob\0builder").decode()
    for _ in range(2):  # the second login updates last-seen, it does not add a client
        client = RawClient(server.c2s_tls, direct_tls=True)
        client.open_stream()
        client.send(
            f"<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>{token}</initial-response>"
            f"<user-agent id='{ua}'><software>Gajim 2.0</software><device>workstation</device></user-agent>"
            "</authenticate>"
        )
        assert b"<success" in client.read_until(rb"</success>")
        client.close()
    done = server.manage(
        "shell",
        "-c",
        "from sessions_acl.models import Client; "
        f"print([(c.user.username, c.software, c.device, c.first_seen <= c.last_seen) "
        f"for c in Client.objects.filter(user_agent_id='{ua}')])",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[('bob', 'Gajim 2.0', 'workstation', True)]"


def test_sasl2_without_bind2_then_rfc6120_bind_on_the_same_stream(server: Server) -> None:
    import base64

    client = RawClient(server.c2s)
    client.starttls()
    token = base64.b64encode(b"\0carol\0singer").decode()
    client.send(
        f"<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>{token}</initial-response>"
        "</authenticate>"
    )
    reply = client.read_until(rb"</stream:features>")
    assert b"<authorization-identifier>carol@localhost</authorization-identifier>" in reply
    assert b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" in reply
    # no restart: the bind iq goes on the same stream (nbxmpp 7.4 does exactly this)
    client.send(
        "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>nb</resource></bind></iq>"
    )
    assert b"<jid>carol@localhost/nb</jid>" in client.read_until(rb"</iq>")
    client.close()
