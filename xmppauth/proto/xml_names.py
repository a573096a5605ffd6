"""libxml2 name dictionaries of our own, so that the names a peer invents are freed again (lxml 6).

The problem
-----------
libxml2 interns strings in a dictionary (``xmlDict``): a parser with ``dictNames`` set (lxml always
sets it) looks every element and attribute local name, namespace prefix and namespace URI up in
it, and, of the text, the whitespace-only runs of 16 to 59 bytes that end at a tag (shorter text is
stored inside the node, lxml's ``compact`` option; other text and all attribute values are copied,
not interned). A dictionary only grows: it is freed as a whole when its last user lets go.

lxml 6 gives every *thread* one dictionary (``_ParserDictionaryContext._c_dict`` in
``parser.pxi``, found through the thread state's dict under the key ``"_ParserDictionaryContext"``
by ``_findThreadParserContext``): ``initParserDict`` points each parser at it on its first
``feed()``, and ``initDocDict`` every new document (``etree.Element``, ``copy.copy`` of an element,
``fromstring``). It lives as long as the thread, and the main thread's is never freed. A peer that
sends ever new names therefore grows the server for good: about 41 bytes per distinct 7-character
name and 46 per 13-byte namespace URI with lxml 6.2.1 / libxml2 2.14.6 (``bench/xml_names.py
memory``), 40 MB per million, before this module.

The design
----------
:func:`new_dictionary` makes a fresh lxml context for the calling thread the way lxml itself
does for a new thread: it takes the thread's context out of the thread state's dict for a moment
and lets lxml create another (``etree.memory_debugger.dict_size()`` calls ``_getThreadDict``, whose
new dictionary is a child, ``xmlDictCreateSub``, of the main one: names already there are found
there, new names go into the child). :func:`enter` puts such a context in place of the thread's
own and returns the one it replaced, :func:`leave` puts that back. Whatever lxml does in between
(a parser's first ``feed()``, a copy, a new document) takes the names into the child, which is
freed when the context object and every parser and document that took it are gone. lxml already
copes with documents of different dictionaries (names are moved across when a node changes
document, as between two threads), so no document is ever left with a string it does not own.

:class:`~xmppauth.proto.xml.StreamParser` makes one context per libxml2 parser and replaces both
every :data:`~xmppauth.proto.xml.EPOCH_BYTES` of input, between two top-level elements, so that
one stream's dictionary holds at most what that much input can name; :func:`finish` ends a replaced
parser's document so that it is freed at once (lxml's parser, context and document refer to one
another, and would otherwise wait for a full collection of the cycle collector).
:func:`parse_element` parses a stanza the server stored as bytes into a dictionary of its own.

Depending on lxml's internals
-----------------------------
This relies on three things lxml 6 does not promise: the thread-state key, that a missing key
makes lxml create a new context with a child dictionary, and that parsers and new documents take
the context's dictionary when created (parsers: on their first ``feed()``). :func:`_self_check`
runs at import: it makes a context, interns a name never seen under it, and checks with
``etree.memory_debugger.dict_size()`` that the name went into the new dictionary and not into the
thread's own. If that fails, :data:`ISOLATED` is False, a ``RuntimeWarning`` says so, and
:func:`enter` does nothing (names are then interned as lxml does by default: unbounded again);
``tests/proto/test_xml_names.py`` fails on it. lxml 7 makes the dictionary a parser's own
(lxml commit 0b512418, "Make the XML names dict local to a parser rather than local to a thread")
and copies keep their source's, so there the replaced parsers alone bound it; this module is then
unnecessary and should be checked again before lifting the ``lxml<7`` pin.

Reading the thread state's dict needs ``PyThreadState_GetDict`` (CPython's C API) through
``ctypes``; it returns a borrowed reference, so it is declared as returning a pointer and turned
into an object with ``ctypes.cast`` (a ``py_object`` return type would steal a reference on every
call). It is read once per thread.
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings
from typing import Final

from lxml import etree

__all__ = ["ISOLATED", "enter", "finish", "leave", "new_dictionary", "parse_element"]

_KEY: Final = "_ParserDictionaryContext"
_get_dict_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p)(("PyThreadState_GetDict", ctypes.pythonapi))


_local = threading.local()


def _thread_state() -> dict[str, object]:
    """The calling thread's state dict, where lxml keeps the thread's context (looked up once per thread)."""
    try:
        state: dict[str, object] = _local.state
    except AttributeError:
        pointer = _get_dict_pointer()
        if not pointer:  # pragma: no cover - only without a thread state, which Python code always has
            raise RuntimeError("PyThreadState_GetDict() returned NULL") from None
        state = _local.state = ctypes.cast(pointer, ctypes.py_object).value
    return state


_UNCHANGED: Final = object()  # what enter(None) returns: leave() has nothing to undo


def _fresh_context() -> object:
    state = _thread_state()
    own = state.pop(_KEY, None)
    try:
        etree.memory_debugger.dict_size()  # lxml makes the thread a new context and a child dictionary
        return state[_KEY]
    finally:
        if own is None:
            state.pop(_KEY, None)
        else:
            state[_KEY] = own


def new_dictionary() -> object | None:
    """A new, empty name dictionary (as an lxml context) for :func:`enter`; None if not :data:`ISOLATED`."""
    return _fresh_context() if ISOLATED else None


def enter(context: object | None) -> tuple[dict[str, object], object | None]:
    """Make ``context`` the calling thread's dictionary; return what :func:`leave` needs to undo it."""
    try:
        state: dict[str, object] = _local.state  # _thread_state(), without a call on the hot path
    except AttributeError:
        state = _thread_state()
    own = state.get(_KEY)
    if context is None:
        return state, _UNCHANGED
    state[_KEY] = context
    return state, own


def leave(token: tuple[dict[str, object], object | None]) -> None:
    """Give the calling thread back the context it had before :func:`enter` (None: lxml makes one anew)."""
    state, own = token
    if own is None:
        state.pop(_KEY, None)
    elif own is not _UNCHANGED:
        state[_KEY] = own


def finish(parser: etree.XMLPullParser, end_tag: bytes) -> None:
    """End ``parser``'s document with ``end_tag`` (its open root's; empty if none), and close it.

    lxml's parser, its parser context and its document refer to one another: left alone they, and
    the dictionary, would wait for a full collection of the cyclic garbage collector. Parsing the
    root's end tag empties the context's stack of open elements and ``close()`` makes it let go of
    the document. Call it between top-level elements, with the parser's dictionary current (a
    document is closed into the current one); a parser that cannot finish is left to the collector.
    """
    try:
        if end_tag:
            parser.feed(end_tag)
        for _ in parser.read_events():
            pass
        parser.close()
    except etree.LxmlError:
        pass


_ELEMENT_PARSER: Final = etree.XMLParser(
    resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False, collect_ids=False
)


def parse_element(data: bytes) -> etree._Element:
    """Parse one complete element the server serialized itself (a stored, held or unacknowledged stanza).

    Where ``etree.fromstring`` would intern the element's names in the thread's dictionary for
    good, this gives it a dictionary of its own, freed with the element. For the server's own
    output only: none of the stream parser's restricted-XML checks are made.
    """
    own = enter(new_dictionary())
    try:
        return etree.fromstring(data, _ELEMENT_PARSER)
    finally:
        leave(own)


def _self_check() -> bool:
    """Whether a name interned under a context of ours stays out of the thread's own dictionary."""

    def size() -> int:
        return int(etree.memory_debugger.dict_size())

    try:
        context = _fresh_context()
        if type(context).__name__ != "_ParserDictionaryContext" or context is _thread_state().get(_KEY):
            return False
        name = f"x{os.urandom(8).hex()}"  # in no dictionary yet
        before = size()
        own = enter(context)
        try:
            inner = size()
            etree.Element(name)
            grew = size() - inner
        finally:
            leave(own)
        return grew == 1 and size() == before
    except Exception:  # any change of lxml's internals means: not isolated
        return False


ISOLATED: Final = _self_check()
"""Whether dictionaries of our own work with this lxml; if not, names go to lxml's thread dictionary."""

if not ISOLATED:  # pragma: no cover - an lxml whose internals changed
    warnings.warn(
        f"lxml {etree.__version__}: xmppauth.proto.xml_names cannot give parsers name dictionaries of "
        "their own; distinct names a peer sends are kept until the process ends",
        RuntimeWarning,
        stacklevel=1,
    )
