"""Connection limits over real sockets (issue 12, item 2; xmppauth/transport/limits.py).

Before, 400 connections from one address were all accepted. Now a server limited to 5 connections per
address and a burst of 8 new ones (then 2 a second) refuses the excess with a policy-violation stream
error on the STARTTLS listener and on WebSocket, and closes it unspent on the direct-TLS listener;
connections from other addresses are not held, and a place freed is a place again. Clients come from
several loopback addresses (127.0.0.x) as from several machines.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator

import pytest
import websockets
from OpenSSL import SSL

from tests.integration.rawclient import RawClient, client_header, parse_stream_error, websocket_bound
from tests.integration.server import Server, running_server

pytestmark = pytest.mark.integration

LIMITS = {
    "XMPP_MAX_CONNECTIONS_PER_ADDRESS": "5",
    "XMPP_CONNECT_BURST": "8",
    "XMPP_CONNECTS_PER_SECOND_PER_ADDRESS": "2",
    "XMPP_HTTP_REQUEST_TIMEOUT": "2",
}
_sources = iter(range(2, 250))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("connlimits"), {}, **LIMITS) as srv:
        yield srv


def new_address() -> str:
    return f"127.0.0.{next(_sources)}"


def starttls_header(server: Server, source: str) -> tuple[RawClient, bytes]:
    client = RawClient(server.c2s, source=source)
    client.send(client_header())
    return client, client.read_until(rb"</stream:features>|</stream:stream>")


def test_an_address_gets_so_many_connections_and_is_told_why_beyond(server: Server) -> None:
    source = new_address()
    held = [starttls_header(server, source) for _ in range(5)]
    assert all(b"<starttls" in features for _, features in held)
    refused, reply = starttls_header(server, source)
    assert parse_stream_error(reply) == "policy-violation", reply
    assert b"too many connections from your address" in reply
    assert b"<starttls" not in reply  # nothing offered to it
    refused.read_to_close()
    # another machine is not held
    other, features = starttls_header(server, new_address())
    assert b"<starttls" in features
    # a connection that goes frees its place
    held[0][0].close()
    time.sleep(0.3)
    again, features = starttls_header(server, source)
    assert b"<starttls" in features, features
    for client, _ in [*held[1:], (other, b""), (again, b"")]:
        client.close()
    assert "too many connections from your address" in server.log_text()  # logged when it trips


def test_the_direct_tls_listener_closes_the_excess_before_any_handshake(server: Server) -> None:
    source = new_address()
    held = [RawClient(server.c2s_tls, direct_tls=True, source=source) for _ in range(5)]
    with pytest.raises(SSL.Error):  # the server closes before a ServerHello
        RawClient(server.c2s_tls, direct_tls=True, source=source)
    for client in held:
        client.close()


def http_socket(server: Server, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.http), timeout=10, source_address=(source, 0))
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


async def websocket_from(server: Server, source: str) -> websockets.ClientConnection:
    sock = http_socket(server, source)
    sock.setblocking(False)
    url = f"ws://127.0.0.1:{server.http}/xmpp-websocket"
    return await websockets.connect(url, sock=sock, subprotocols=["xmpp"])  # type: ignore[list-item]


def get(sock: socket.socket, path: str = "/signin/") -> bytes:
    """One keep-alive GET; the whole response (headers and body, by its Content-Length)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(4096)
    return head


def test_the_http_listener_counts_in_the_same_limits_and_says_why_with_503(server: Server) -> None:
    source = new_address()
    held = [client for client, _ in (starttls_header(server, source) for _ in range(3))]  # counted: answered
    pages = [http_socket(server, source) for _ in range(2)]
    assert get(pages[0]).startswith(b"HTTP/1.1 200"), "an admitted HTTP connection is served"
    refused = http_socket(server, source)  # the sixth connection of the address, HTTP or XMPP alike
    answer = read_all(refused)
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable"), answer
    assert b"too many connections from your address" in answer
    refused.close()
    client, reply = starttls_header(server, source)  # nor the XMPP listener: the places are shared
    assert parse_stream_error(reply) == "policy-violation", reply
    client.close()
    pages[1].close()  # an HTTP connection that goes frees its place for any listener
    time.sleep(0.3)
    client, features = starttls_header(server, source)
    assert b"<starttls" in features, features
    pages[0].close()
    for xmpp in [client, *held]:
        xmpp.close()


def test_a_request_trickled_past_the_deadline_gets_408_and_an_idle_connection_is_closed(
    server: Server,
) -> None:
    source = new_address()
    trickler, idle = http_socket(server, source), http_socket(server, source)
    assert get(idle).startswith(b"HTTP/1.1 200")  # then nothing: an idle keep-alive connection
    started = time.monotonic()
    for byte in b"GET /signin/ HTTP/1.1\r\nHost: local":  # one byte a tenth of a second
        try:
            trickler.send(bytes([byte]))
        except OSError:
            break
        time.sleep(0.1)
    answer = read_all(trickler)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout"), answer
    assert b"the request did not arrive in time" in answer
    assert 1.5 < time.monotonic() - started < 5, "the deadline is the setting's 2 s, whatever the trickle"
    assert read_all(idle) == b"", "an idle keep-alive connection is closed without a response"
    for sock in (trickler, idle):
        sock.close()
    assert "closed: the request did not arrive in time" in server.log_text()


def test_a_websocket_beyond_the_limit_is_refused_with_503(server: Server) -> None:
    source = new_address()

    async def run() -> Exception:
        # the address's five places, each answered (so counted before the WebSocket comes: the two listeners'
        # accepts run in whatever order the event loop sees them)
        held = [client for client, _ in (starttls_header(server, source) for _ in range(5))]
        try:
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websocket_from(server, source)
            return refused.value
        finally:
            for client in held:
                client.close()

    refused = asyncio.run(run())
    assert isinstance(refused, websockets.InvalidStatus)
    assert refused.response.status_code == 503
    assert b"too many connections from your address" in refused.response.body


def test_a_websocket_counts_once_and_outlives_the_request_deadline(server: Server) -> None:
    """The HTTP listener admitted the connection; the WebSocket it became is not counted again, and the
    HTTP request deadline (2 s here) does not end the XMPP stream that follows."""
    source = new_address()

    async def run() -> str:
        held = [
            client for client, _ in (starttls_header(server, source) for _ in range(2))
        ]  # and 3 WebSockets: 5
        try:
            sockets = [await websocket_from(server, source) for _ in range(3)]
            await asyncio.sleep(3)  # past the HTTP deadline
            ws = sockets[-1]
            await ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
            frames = [await asyncio.wait_for(ws.recv(), 5) for _ in range(2)]
            for ws in sockets:
                await ws.close()
            return "".join(frame if isinstance(frame, str) else frame.decode() for frame in frames)
        finally:
            for client in held:
                client.close()

    text = asyncio.run(run())
    assert "<open " in text, text
    assert "<stream:features" in text, text
    assert "policy-violation" not in text


def test_a_flood_of_connects_gets_its_burst_then_the_rate(server: Server) -> None:
    source = new_address()
    outcomes = []
    for _ in range(12):  # each closed again at once: the open limit is not what holds them
        client, reply = starttls_header(server, source)
        outcomes.append(parse_stream_error(reply))
        client.close()
    assert outcomes[:8] == [None] * 8, outcomes
    assert "policy-violation" in outcomes[8:], outcomes
    time.sleep(1.1)  # 2 a second come back
    client, reply = starttls_header(server, source)
    assert b"<starttls" in reply, reply
    client.close()


def refused_starttls(server: Server, source: str) -> socket.socket:
    """A STARTTLS connection from ``source`` beyond its limit of 5 (five held open first)."""
    held = [socket.create_connection(("127.0.0.1", server.c2s), source_address=(source, 0)) for _ in range(5)]
    time.sleep(0.2)  # counted
    extra = socket.create_connection(("127.0.0.1", server.c2s), source_address=(source, 0))
    extra.settimeout(10)
    for sock in held:
        sock.close()
    return extra


@pytest.mark.parametrize("sends_header", [True, False], ids=["header", "silent"])
def test_a_refused_starttls_connection_gets_the_whole_error_and_a_clean_close(
    server: Server, sends_header: bool
) -> None:
    """The transport tells a refused connection itself (no stream set up for it): our header, the
    error, the end, whether the client sent its header or nothing; then the connection closes without
    a reset (the server reads the client's header first: closing on unread data sends a reset, and on
    some systems a reset throws away what the client had not read yet), within REFUSAL_LINGER (1 s)
    for a client that says nothing."""
    extra = refused_starttls(server, new_address())
    if sends_header:
        extra.sendall(client_header())
    started = time.monotonic()
    reply = read_all(extra)  # raises ConnectionResetError on a reset
    waited = time.monotonic() - started
    extra.close()
    assert reply.startswith(b"<?xml version='1.0'?><stream:stream "), reply
    assert parse_stream_error(reply) == "policy-violation", reply
    assert b"too many connections from your address" in reply
    assert reply.endswith(b"</stream:stream>"), reply
    assert waited < 3.0, f"a refused connection stayed open {waited:.1f} s"


def test_a_refused_connection_costs_the_server_no_handshake(server: Server) -> None:
    """Raw: the refused direct-TLS socket is closed by the server without a byte of TLS."""
    source = new_address()
    held = [
        socket.create_connection(("127.0.0.1", server.c2s_tls), source_address=(source, 0)) for _ in range(5)
    ]
    extra = socket.create_connection(("127.0.0.1", server.c2s_tls), source_address=(source, 0))
    extra.settimeout(5)
    assert extra.recv(100) == b""  # closed, nothing written
    for sock in [*held, extra]:
        sock.close()


def test_what_anyone_can_make_django_log_is_written_once_a_minute_without_a_traceback(server: Server) -> None:
    """A bad Host, a static path out of its directory and a 404, pipelined 40 times each on one
    keep-alive connection: each kind is logged once (not 40 tracebacks), and each request answered."""
    source = new_address()
    before = server.log_text()
    sock = http_socket(server, source)
    kinds = [
        ("GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", "DisallowedHost", b"HTTP/1.1 400"),
        (
            "GET /static/%2e%2e/%2e%2e/manage.py HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "SuspiciousFileOperation",
            b"HTTP/1.1 40",
        ),
        (
            "GET /no-such-page/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "Not Found: /no-such-page/",
            b"HTTP/1.1 404",
        ),
    ]
    for request, _, status in kinds:
        sock.sendall(request.encode() * 40)
        answers = b""
        while answers.count(status) < 40:
            chunk = sock.recv(65536)
            assert chunk, answers[-300:]
            answers += chunk
    sock.close()
    time.sleep(0.5)
    logged = server.log_text()[len(before) :]
    for _, marker, _ in kinds:
        assert logged.count(marker) == 1, (marker, logged[-2000:])
    assert "Traceback" not in logged, logged[-2000:]


def test_a_client_that_pipelines_and_stops_reading_is_dropped_and_its_place_freed(server: Server) -> None:
    """3000 pipelined requests, then no reading: the responses fill the socket buffers and the next
    request's response waits; two request deadlines (2 s each) without a byte taken end the
    connection (before, it held its place for minutes), and the address has its places again."""
    source = new_address()
    sock = http_socket(server, source)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /signin/ HTTP/1.1\r\nHost: localhost\r\n\r\n" * 3000)
    time.sleep(7)  # not reading
    sock.settimeout(10)
    got, ended = b"", False
    try:
        while chunk := sock.recv(1 << 20):
            got += chunk
        ended = True
    except ConnectionResetError:
        ended = True
    sock.close()
    assert ended
    assert 0 < got.count(b"HTTP/1.1 200") < 3000, got.count(b"HTTP/1.1 200")
    assert "it does not read" in server.log_text()
    held = [starttls_header(server, source) for _ in range(5)]  # all five places of the address
    assert all(b"<starttls" in features for _, features in held)
    for client, _ in held:
        client.close()


def test_a_slowloris_that_fills_the_server_holds_out_no_other_address(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two addresses fill a server of 12 connections with requests they never finish: a browser
    from a third address is still served, and an XMPP client from a fourth still gets its features;
    each takes the place of a waiting connection of an address holding the most (before: 503 for
    everyone else for as long as the attack lasted)."""
    limits = {
        "XMPP_MAX_CONNECTIONS": "12",
        "XMPP_MAX_CONNECTIONS_PER_ADDRESS": "7",
        "XMPP_HTTP_REQUEST_TIMEOUT": "30",
        "XMPP_ROOM_AFTER_SECONDS": "600",  # the rule by address alone (the other: the test below)
    }
    with running_server(tmp_path_factory.mktemp("slowloris"), {}, **limits) as small:
        first, second = new_address(), new_address()
        slow = [http_socket(small, first) for _ in range(7)]  # its whole share
        for sock in slow:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: local")  # and never the rest
        while True:  # the other takes what is left, until the server is full
            sock = http_socket(small, second)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: local")  # and never the rest
            sock.settimeout(0.3)
            try:
                answer = sock.recv(200)
            except TimeoutError:
                slow.append(sock)  # admitted, and waiting
                continue
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"too many connections: try again later" in answer + read_all(sock)
            sock.close()
            break
        browser = http_socket(small, new_address())
        assert get(browser).startswith(b"HTTP/1.1 200")
        client, features = starttls_header(small, new_address())  # the browser still holds its place
        assert b"<starttls" in features, features
        client.close()
        browser.close()
        closed = []
        for index, sock in enumerate(slow):
            sock.settimeout(0.3)
            try:
                if sock.recv(100) == b"":
                    closed.append(index)
            except ConnectionResetError:
                closed.append(index)
            except TimeoutError:
                pass
            sock.close()
        # one to even out the two addresses (7 and 5: the second took the first's oldest), one for each
        # newcomer; no more
        assert len(closed) == 3, closed
        assert closed[0] == 0, closed
        assert "room for another address" in small.log_text()


def test_unauthenticated_streams_that_fill_the_server_hold_out_no_other_address(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two addresses fill a server of 12 connections with XMPP streams that never log in: a user from a
    third address still logs in and binds, in the place of the oldest idle stream of the address that
    holds the most; the sessions bound from that same address, older still, are never given up
    (before: refused, "too many connections", for as long as the attack lasted)."""
    limits = {
        "XMPP_MAX_CONNECTIONS": "12",
        "XMPP_MAX_CONNECTIONS_PER_ADDRESS": "7",
        "XMPP_ROOM_AFTER_SECONDS": "600",
    }
    with running_server(tmp_path_factory.mktemp("xmpp-slowloris"), {"dora": "explorer"}, **limits) as small:
        first, second = new_address(), new_address()
        bound = [RawClient(small.c2s_tls, direct_tls=True, source=first) for _ in range(2)]
        for n, client in enumerate(bound):  # a household behind the attacker's address, logged in first
            client.login("dora", "explorer", f"home{n}")
        idle = [starttls_header(small, first)[0] for _ in range(5)]  # the rest of its share
        while True:  # the other takes what is left, until the server is full
            client, reply = starttls_header(small, second)
            if b"<starttls" in reply:
                idle.append(client)
                continue
            assert parse_stream_error(reply) == "policy-violation", reply
            assert b"the server has too many connections" in reply
            client.close()
            break
        assert len(idle) == 11  # 10 open and the bound 2: one of the first's made room as the second filled
        user = RawClient(small.c2s_tls, direct_tls=True, source=new_address())
        assert user.login("dora", "explorer", "away") == "dora@localhost/away"
        for n, client in enumerate(bound):
            client.send(f"<iq type='get' id='still{n}'><ping xmlns='urn:xmpp:ping'/></iq>")
            assert b"type='result'" in client.read_until(f"<iq[^>]*id=.still{n}.[^>]*>").replace(b'"', b"'")
        closed = [index for index, client in enumerate(idle) if client.read_for(0.3) == b"" and client.closed]
        # one to even out the two addresses (the second took the first's oldest idle stream as it filled:
        # 6 and 6), one for the newcomer; no more, and never a bound one
        assert closed == [0, 1], closed
        for client in (*idle, user, *bound):
            client.close()


def test_idle_streams_from_many_addresses_one_each_give_their_places_up_once_they_have_waited(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Found by a black-box attack: addresses holding one idle stream each filled the server and nobody
    got in (no address held more than a newcomer's). Once the oldest has waited XMPP_ROOM_AFTER_SECONDS,
    it gives its place to a user who logs in."""
    limits = {"XMPP_MAX_CONNECTIONS": "6", "XMPP_ROOM_AFTER_SECONDS": "3"}
    with running_server(tmp_path_factory.mktemp("xmpp-many"), {"dora": "explorer"}, **limits) as small:
        idle = [starttls_header(small, new_address())[0] for _ in range(6)]
        client, reply = starttls_header(small, new_address())
        assert parse_stream_error(reply) == "policy-violation", reply  # all of them young: refused
        client.close()
        time.sleep(3.2)
        user = RawClient(small.c2s_tls, direct_tls=True, source=new_address())
        assert user.login("dora", "explorer", "in") == "dora@localhost/in"
        closed = [index for index, one in enumerate(idle) if one.read_for(0.3) == b"" and one.closed]
        assert closed == [0], closed  # the one that waited longest, and only it
        for one in (*idle, user):
            one.close()


def test_a_login_waiting_for_its_second_factor_is_not_given_up_to_make_room(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Found by a black-box attack: an attacker who kept the process full of idle streams, one per address,
    got every login that took longer than XMPP_ROOM_AFTER_SECONDS closed, and a user typing a TOTP code
    takes that long: nobody with a second factor could log in. A stream whose password was right is a
    user's: it is not given up; the idle ones are."""
    from tests.integration.test_grants import manage
    from tests.integration.test_mfa import MFA, SASL2, secret_of, totp_code

    limits = {"XMPP_MAX_CONNECTIONS": "6", "XMPP_ROOM_AFTER_SECONDS": "1"}
    with running_server(tmp_path_factory.mktemp("xmpp-totp"), {"tina": "two-factors"}, **limits) as small:
        uri = re.search(r"otpauth://totp/\S+", manage(small, "totp", "add", "tina"))
        assert uri
        user = RawClient(small.c2s_tls, direct_tls=True, source=new_address())
        assert b"<authentication xmlns='urn:xmpp:sasl:2'>" in user.open_stream()
        user.authenticate_plain("tina", "two-factors", ua="5b1c1f4e-0a56-4d27-8a8e-3f3b2f0c9d11")
        assert b"<task>TOTP</task>" in user.read_until(rb"</continue>")  # the password step passed
        idle = [starttls_header(small, new_address())[0] for _ in range(5)]
        time.sleep(1.3)  # the user, typing its code, has waited longest, then the idle ones
        newcomer, _ = starttls_header(small, new_address())  # room is made for it
        closed = [index for index, one in enumerate(idle) if one.read_for(0.3) == b"" and one.closed]
        assert closed == [0], closed  # an idle stream gave its place up, not the user's
        code = totp_code(secret_of(uri.group(0)), time.time())
        user.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{code}</totp></next>")
        assert b"<success" in user.read_until(rb"</success>|</failure>")
        for one in (*idle, newcomer, user):
            one.close()


def test_a_login_whose_second_factor_failed_may_be_given_up_again(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Found by a second black-box attack: a stream whose password was right and whose code was wrong kept
    the protection of a user's stream, so someone with one password could keep the process full until
    XMPP_PREAUTH_TIMEOUT. After a failed attempt the stream waits again, and it is the one given up."""
    from tests.integration.test_grants import manage
    from tests.integration.test_mfa import MFA, SASL2, secret_of, totp_code

    limits = {"XMPP_MAX_CONNECTIONS": "6", "XMPP_ROOM_AFTER_SECONDS": "1"}
    with running_server(
        tmp_path_factory.mktemp("xmpp-totp-failed"), {"tina": "two-factors"}, **limits
    ) as small:
        uri = re.search(r"otpauth://totp/\S+", manage(small, "totp", "add", "tina"))
        assert uri
        code = totp_code(secret_of(uri.group(0)), time.time())
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        failed = RawClient(small.c2s_tls, direct_tls=True, source=new_address())
        assert b"<authentication xmlns='urn:xmpp:sasl:2'>" in failed.open_stream()
        failed.authenticate_plain("tina", "two-factors", ua="0d6f1c8e-6a55-4c1e-9a57-2f2b7e0c1a44")
        assert b"<task>TOTP</task>" in failed.read_until(rb"</continue>")
        failed.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{wrong}</totp></next>")
        assert b"<not-authorized" in failed.read_until(rb"</failure>")
        idle = [starttls_header(small, new_address())[0] for _ in range(5)]
        time.sleep(1.3)
        newcomer, _ = starttls_header(small, new_address())
        assert failed.read_for(0.3) == b""
        assert failed.closed  # it waited longest: it gave its place up
        assert not any(one.read_for(0.1) == b"" and one.closed for one in idle)
        for one in (*idle, newcomer, failed):
            one.close()


OPEN = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>"


async def unauthenticated_websocket(server: Server, source: str) -> websockets.ClientConnection:
    """An XMPP WebSocket from ``source`` whose stream has begun (the server's open and features read) and
    that never logs in."""
    ws = await websocket_from(server, source)
    await ws.send(OPEN)
    assert "<stream:features" in str(await ws.recv()) + str(await ws.recv())
    return ws


async def closed_by_the_server(ws: websockets.ClientConnection) -> bool:
    """Whether the server has closed ``ws`` (within 0.3 s); a WebSocket not logged in is sent nothing."""
    try:
        await asyncio.wait_for(ws.recv(), 0.3)
    except websockets.ConnectionClosed:
        return True
    except TimeoutError:
        return False
    return False


async def answers_a_ping(ws: websockets.ClientConnection, name: str) -> bool:
    await ws.send(f"<iq xmlns='jabber:client' type='get' id='{name}'><ping xmlns='urn:xmpp:ping'/></iq>")
    answer = str(await asyncio.wait_for(ws.recv(), 5)).replace('"', "'")
    return f"id='{name}'" in answer and "type='result'" in answer


def test_unauthenticated_websockets_that_fill_the_server_hold_out_no_other_address(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """One address (127.0.0.2) fills a server of 8 connections with XMPP WebSockets that never log in:
    users from another address (127.0.0.1) still log in, over WebSocket and over TCP, each in the place
    of the oldest of those WebSockets, which is closed (before: 503 for every other WebSocket and refused
    on TCP, until XMPP_PREAUTH_TIMEOUT ended them, and the attacker could connect again)."""
    limits = {"XMPP_MAX_CONNECTIONS": "8", "XMPP_ROOM_AFTER_SECONDS": "600"}  # the rule by address alone
    with running_server(tmp_path_factory.mktemp("ws-slowloris"), {"dora": "explorer"}, **limits) as small:

        async def run() -> list[int]:
            idle = [await unauthenticated_websocket(small, "127.0.0.2") for _ in range(8)]
            with pytest.raises(websockets.InvalidStatus) as refused:  # full, and it holds the most
                await websocket_from(small, "127.0.0.2")
            assert refused.value.response.status_code == 503
            url = f"ws://127.0.0.1:{small.http}/xmpp-websocket"
            user = await websocket_bound(url, "dora", "explorer", "web")
            closed = [index for index, ws in enumerate(idle) if await closed_by_the_server(ws)]
            assert closed == [0], closed  # the oldest, and only it
            tcp = RawClient(small.c2s_tls, direct_tls=True, source="127.0.0.1")
            assert tcp.login("dora", "explorer", "phone") == "dora@localhost/phone"
            closed += [index for index, ws in enumerate(idle) if index and await closed_by_the_server(ws)]
            assert await answers_a_ping(user, "still")
            tcp.close()
            for ws in [user, *idle]:
                await ws.close()
            return closed

        assert asyncio.run(run()) == [0, 1]
        log = small.log_text()
        assert "a waiting connection from 127.0.0.2 closed to make room for another address" in log
        assert "Traceback" not in log, log[-3000:]  # the streams given up ended as any client that went


def test_idle_websockets_from_many_addresses_give_their_places_up_once_they_have_waited_and_a_bound_one_never(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The WebSocket counterpart of the test above it for TCP: addresses holding one WebSocket each that
    never logs in fill the server; once they have waited XMPP_ROOM_AFTER_SECONDS the one that waited
    longest gives its place to a user who logs in. A WebSocket that logged in, older than all of them,
    is never given up."""
    limits = {"XMPP_MAX_CONNECTIONS": "6", "XMPP_ROOM_AFTER_SECONDS": "3"}
    with running_server(tmp_path_factory.mktemp("ws-many"), {"dora": "explorer"}, **limits) as small:
        url = f"ws://127.0.0.1:{small.http}/xmpp-websocket"

        async def run() -> list[int]:
            first = await websocket_bound(url, "dora", "explorer", "first")
            idle = [await unauthenticated_websocket(small, new_address()) for _ in range(5)]
            with pytest.raises(websockets.InvalidStatus) as refused:  # all of them young: refused
                await websocket_from(small, new_address())
            assert refused.value.response.status_code == 503
            await asyncio.sleep(3.2)
            user = await websocket_bound(url, "dora", "explorer", "in")
            closed = [index for index, ws in enumerate(idle) if await closed_by_the_server(ws)]
            assert await answers_a_ping(first, "first")
            for ws in [first, user, *idle]:
                await ws.close()
            return closed

        assert asyncio.run(run()) == [0]  # the one that waited longest, and only it
