"""What the stream parser (:mod:`.xml`) hands out: the stream header, each complete top-level element,
the end of the stream."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lxml import etree


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamOpened:
    """The stream header: the TCP ``<stream:stream ...>`` start tag, or RFC 7395 ``<open/>``.

    The tag, namespaces and attributes are reported as received; validating them (and answering
    with ``invalid-namespace``, ``unsupported-version`` and so on) is the caller's job.
    """

    tag: str
    """Clark name, e.g. ``{http://etherx.jabber.org/streams}stream`` or the framing ``open``."""
    attrs: Mapping[str, str]
    """Attributes as lxml names them (``to``, ``version``, ``{...XML/1998/namespace}lang``)."""
    default_ns: str | None
    """Default namespace declared on the TCP header; ``None`` in framed mode."""
    stream_prefix_ns: str | None
    """Namespace bound to the ``stream`` prefix on the TCP header; ``None`` in framed mode."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ElementReceived:
    """A complete top-level (depth 1) element, owned by the caller.

    It is the root of a document of its own (``getparent()`` is ``None``), carries the namespace
    declarations it needs and has no tail; ``serialize(element)`` gives the wire form.
    """

    element: etree._Element


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamEnded:
    """``</stream:stream>`` (TCP) or ``<close/>`` (framed); later input is ignored."""


ParseEvent = StreamOpened | ElementReceived | StreamEnded
