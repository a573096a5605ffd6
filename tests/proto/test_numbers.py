"""parse_uint: the one parser for numbers from the wire (XEP-0198 h, XEP-0484 count, XEP-0494 ids,
SCRAM iteration counts)."""

from __future__ import annotations

import base64

import pytest

from tests.proto.test_fast import FAST, USER_AGENT, failure, fast_login, stream
from xmppauth.proto import events as ev
from xmppauth.proto.errors import StreamError, StreamErrorCondition
from xmppauth.proto.numbers import MAX_DIGITS, parse_uint
from xmppauth.proto.sasl import ScramClient
from xmppauth.proto.xep0198_sm import StreamManagement


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("1", 1), ("42", 42), ("007", 7), ("18446744073709551615", 2**64 - 1)],
)
def test_it_reads_ascii_digits(text: str, value: int) -> None:
    assert parse_uint(text) == value


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "²",  # SUPERSCRIPT TWO: isdigit() says yes, int() says no
        "1²",
        "٣",  # ARABIC-INDIC DIGIT THREE: int() would read 3
        "१२",  # DEVANAGARI digits
        "\uff11",  # FULLWIDTH DIGIT ONE
        "+1",
        "-1",
        " 1",
        "1 ",
        "\t1",
        "1\n",
        "1_000",
        "0x1",
        "1e3",
        "1.0",
        "½",
        "x",
    ],
)
def test_it_refuses_anything_but_ascii_digits(text: str | None) -> None:
    assert parse_uint(text) is None


def test_it_refuses_very_long_strings_before_converting_them() -> None:
    assert parse_uint("9" * MAX_DIGITS) == 10**MAX_DIGITS - 1
    assert parse_uint("9" * (MAX_DIGITS + 1)) is None
    assert parse_uint("0" * (MAX_DIGITS + 1)) is None
    assert parse_uint("1" * 5000) is None  # int() would raise: it refuses over 4300 digits


def test_it_refuses_values_above_the_maximum() -> None:
    assert parse_uint("255", maximum=255) == 255
    assert parse_uint("256", maximum=255) is None
    assert parse_uint("0", maximum=0) == 0


def test_positive_means_rfc5802_posit_number() -> None:
    assert parse_uint("4096", positive=True) == 4096
    assert parse_uint("0", positive=True) is None
    assert parse_uint("04096", positive=True) is None
    assert parse_uint("²", positive=True) is None


@pytest.mark.parametrize("h", ["²", "٣", "+1", " 1", "1 ", "", "0x1", "1_0", "9" * 30])
def test_an_h_that_is_not_a_plain_number_is_a_stream_error(h: str) -> None:
    sm = StreamManagement.enable(resume=False, max_seconds=60)
    sm.stanza_sent(b"<message/>")
    with pytest.raises(StreamError) as caught:
        sm.acknowledge(h)
    assert caught.value.condition is StreamErrorCondition.INVALID_XML
    assert caught.value.text == "'h' must be a number"
    assert len(sm.unacked) == 1


def test_an_h_beyond_32_bits_is_a_stream_error() -> None:
    sm = StreamManagement.enable(resume=False, max_seconds=60)
    with pytest.raises(StreamError, match="between 0 and 2"):
        sm.acknowledge(str(2**32))
    sm.acknowledge("0")
    assert sm.outbound_acked == 0


@pytest.mark.parametrize("count", ["٣", "²", "+3", "3 ", "03", "0x3"])
def test_a_fast_count_that_is_not_a_plain_number_is_malformed(count: str) -> None:
    t = stream(issued_for="HT-SHA-256-NONE")
    t.client(fast_login("HT-SHA-256-NONE", extra=f"{USER_AGENT}<fast xmlns='{FAST}' count='{count}'/>"))
    t.server(failure("malformed-request", "&lt;fast count='…'/&gt; must be a positive integer"))
    assert isinstance(t.events[-1], ev.AuthFailed)


@pytest.mark.parametrize("iterations", ["٤٠٩٦", "+4096", "04096", "4096 ", "4_096", "9" * 30])
def test_the_scram_client_refuses_an_iteration_count_that_is_not_a_plain_number(iterations: str) -> None:
    client = ScramClient("SHA-256", "user", "pencil", nonce="abc")
    client.first()
    salt = base64.b64encode(b"salt").decode()
    with pytest.raises(ValueError, match="malformed iteration count"):
        client.final(f"r=abcdef,s={salt},i={iterations}".encode())
