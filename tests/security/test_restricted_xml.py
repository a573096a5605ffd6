"""Catalogue rows 1 and 2 (docs/security.md): XML bombs, external entities and DTDs, and the other
constructs RFC 6120 §11.1 forbids, sent over real sockets to a running server in every phase of a login.

Row 1 passes when each attack ends the stream with ``<restricted-xml/>`` within 100 ms, nothing is
fetched (a loopback TCP canary sees no connection) and no file is opened (a named pipe sees no reader),
and the server's peak memory grows by less than 1 MiB. Row 2 passes when each construct, sent one byte
per write, ends the stream although the stanza never ends: the stream never waits for more input.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rawclient import RawClient, Session, parse_stream_error
from tests.integration.server import Server
from tests.security.helpers import (
    PHASES,
    FileCanary,
    NetworkCanary,
    ServerMemory,
    best_of,
    canaries,
    closed_with,
    header_after,
    local_port,
    logged,
    send_and_time_close,
    send_bytewise,
    stream_in,
)

pytestmark = pytest.mark.integration

LOL = "".join(f"<!ENTITY lol{i} '{f'&lol{i - 1};' * 10}'>" for i in range(1, 10))
BILLION_LAUGHS = f"<!DOCTYPE lolz [<!ENTITY lol0 'lol'>{LOL}]>"
QUADRATIC = f"<!DOCTYPE q [<!ENTITY big '{'x' * 10_000}'>]>"


def attacks(net: NetworkCanary, fifo: FileCanary) -> dict[str, tuple[str, str]]:
    """name → (the DTD part, the stanza that uses it)."""
    stanza = "<message to='bob@localhost' type='chat'><body>{}</body></message>"
    return {
        "billion-laughs": (BILLION_LAUGHS, stanza.format("&lol9;")),
        # CVE-2013-1664 style: the expansion happens inside attribute values
        "attribute-bomb": (BILLION_LAUGHS, "<message to='bob@localhost' id='&lol9;' xml:lang='&lol9;'/>"),
        "quadratic-blowup": (QUADRATIC, stanza.format("&big;" * 3000)),
        "xxe-file": (f"<!DOCTYPE s [<!ENTITY xxe SYSTEM '{fifo.url}'>]>", stanza.format("&xxe;")),
        "xxe-http": (f"<!DOCTYPE s [<!ENTITY xxe SYSTEM '{net.url('xxe')}'>]>", stanza.format("&xxe;")),
        "external-dtd": (f"<!DOCTYPE stream:stream SYSTEM '{net.url('ext.dtd')}'>", stanza.format("hi")),
        "parameter-entity": (
            f"<!DOCTYPE s [<!ENTITY % p SYSTEM '{net.url('p.dtd')}'> %p;]>",
            stanza.format("&fromdtd;"),
        ),
    }


ATTACKS = [
    "billion-laughs",
    "attribute-bomb",
    "quadratic-blowup",
    "xxe-file",
    "xxe-http",
    "external-dtd",
    "parameter-entity",
]


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NetworkCanary, FileCanary]]:
    with canaries(tmp_path_factory.mktemp("canary")) as pair:
        yield pair


def payload(phase: str, dtd: str, stanza: str) -> bytes:
    if phase == "before-header":
        return header_after(dtd.encode()) + stanza.encode()
    return (dtd + stanza).encode()


# ---------------------------------------------------------------------------------------- row 1
@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("attack", ATTACKS)
def test_an_xml_bomb_or_external_entity_is_restricted_xml_at_once_and_fetches_nothing(
    server: Server, canary: tuple[NetworkCanary, FileCanary], attack: str, phase: str
) -> None:
    net, fifo = canary
    dtd, stanza = attacks(net, fifo)[attack]
    data = payload(phase, dtd, stanza)
    ports: list[int] = []

    def attempt() -> float:
        client = stream_in(server, phase)
        ports.append(local_port(client, server))
        try:
            out, took = send_and_time_close(client, data)
        finally:
            client.close()
        assert parse_stream_error(out) == "restricted-xml", out[-300:]
        return took

    took = best_of(3, attempt)
    assert took <= 0.1, f"the stream error came {took * 1000:.0f} ms after the attack"
    assert net.connections == [], "the server fetched an external entity or DTD"
    assert not fifo.reader_present(), "the server opened a file named by an entity"
    assert "restricted-xml" in logged(server, ports[-1], "stream error restricted-xml")


def test_xml_bombs_in_every_phase_grow_the_servers_peak_memory_by_less_than_a_mebibyte(
    server: Server, canary: tuple[NetworkCanary, FileCanary]
) -> None:
    net, fifo = canary
    every = [(phase, payload(phase, *attacks(net, fifo)[name])) for name in ATTACKS for phase in PHASES]

    def run_all() -> None:
        for phase, data in every:
            client = stream_in(server, phase)
            try:
                assert closed_with_after(client, data) == "restricted-xml"
            finally:
                client.close()

    run_all()  # the first round warms up what any login allocates once (caches, pools)
    memory = ServerMemory(server.proc.pid)
    memory.start()
    run_all()
    run_all()
    growth = memory.peak_growth()
    assert growth < 1024 * 1024, f"peak RSS grew by {growth / 1024:.0f} KiB over {2 * len(every)} attacks"
    assert net.connections == []
    assert not fifo.reader_present()


def closed_with_after(client: RawClient, data: bytes) -> str | None:
    out, _ = send_and_time_close(client, data)
    return parse_stream_error(out)


def test_xinclude_and_schema_locations_in_a_delivered_stanza_are_not_followed(
    server: Server, canary: tuple[NetworkCanary, FileCanary], bob: Session
) -> None:
    """Not restricted XML, so the stanza is routed as it is; but nobody resolves what it points at."""
    net, _fifo = canary
    alice = Session(server, "alice", "wonderland")
    assert alice.ok, alice.reply
    alice.send(
        f"<message to='{bob.jid}' type='chat' id='xi1'><body>look</body>"
        "<include xmlns='http://www.w3.org/2001/XInclude' "
        f"href='{net.url('xinclude')}' parse='text'/>"
        "<x xmlns='urn:example:x' xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' "
        f"xsi:schemaLocation='urn:example:x {net.url('schema.xsd')}'/></message>"
    )
    delivered = bob.expect("</message>")
    assert b"XInclude" in delivered, delivered
    assert net.url("xinclude").encode() in delivered
    bob.quiet(0.3)
    assert net.connections == []
    alice.close()


# ---------------------------------------------------------------------------------------- row 2
CONSTRUCTS = {
    "comment": (b"<!-- hidden -->", {"restricted-xml"}),
    "processing-instruction": (b"<?php system('id'); ?>", {"restricted-xml"}),
    "cdata": (b"<![CDATA[<x/>]]>", {"restricted-xml"}),
    "doctype": (b"<!DOCTYPE message>", {"restricted-xml"}),
    "undefined-entity": (b"&foo;", {"restricted-xml", "not-well-formed"}),
    "undefined-entity-in-attribute": (b"<x y='&foo;'/>", {"restricted-xml", "not-well-formed"}),
}


@pytest.mark.parametrize("phase", ["cleartext", "tls-preauth", "bound"])
@pytest.mark.parametrize("construct", list(CONSTRUCTS))
def test_a_forbidden_construct_sent_a_byte_at_a_time_ends_the_stream_without_waiting(
    server: Server, construct: str, phase: str
) -> None:
    data, conditions = CONSTRUCTS[construct]
    client = stream_in(server, phase)
    port = local_port(client, server)
    client.send(b"<message to='bob@localhost' type='chat'><body>")
    send_bytewise(client, data)
    # The stanza is never finished: the error must come from the construct itself.
    condition = closed_with(client, timeout=5)
    client.close()
    assert condition in conditions
    logged(server, port, f"stream error {condition}")


def test_the_file_canary_sees_a_reader(tmp_path: Path) -> None:
    """The canary's own control: a reader blocked in open() is seen (and released)."""
    import threading

    fifo = FileCanary(tmp_path)
    assert not fifo.reader_present()
    opened = threading.Event()

    def read() -> None:
        with fifo.path.open("rb") as fh:
            opened.set()
            fh.read()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = 50
    while not fifo.reader_present():
        deadline -= 1
        assert deadline, "a blocked reader was not seen"
        threading.Event().wait(0.02)
    reader.join(2)
    assert opened.is_set()


def test_the_network_canary_sees_a_connection() -> None:
    """The canary's own control: a connection to it is recorded."""
    import socket
    import time

    net = NetworkCanary()
    try:
        with socket.create_connection(("127.0.0.1", net.port), timeout=2):
            deadline = time.monotonic() + 2
            while not net.connections and time.monotonic() < deadline:
                time.sleep(0.02)
        assert len(net.connections) == 1
    finally:
        net.close()
