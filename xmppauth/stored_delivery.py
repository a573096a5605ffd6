"""Sending one session the messages its account's offline store holds (XEP-0160), stamped with when
they came (XEP-0203).

One :class:`StoredDelivery` belongs to a session (a :class:`~xmppauth.consumer.StreamConsumer`), which
calls it and hands it what it needs of the session: a few public members (:class:`Session`), and
callables for what only the session knows or may do (whether its stream is open or taken over, ending
itself after a failure, a step whose failure is logged, a message to its transport, stanzas held for
its end). It never imports the consumer.

In pieces, as the client reads. The router asks for a delivery when the session first becomes
available with a non-negative priority (RFC 6121 §8.5.2.1.1). The oldest stored messages that fit in
:func:`xmppauth.sending.piece_bytes` go to the session as any other stanza would (so XEP-0352 holding
and XEP-0198 counting apply to them); when the transport can tell that its client has read what it was
sent (``xmpp.drain``, TCP), the next piece waits for that (``xmpp.drained``), else it follows at once.
Megabytes of stored messages written at once would wait for a client on a slow link past
XMPP_MAX_OUTGOING_BYTES, and the connection would be dropped at every login.

Acknowledged with stream management. Without XEP-0198 nothing is ever acknowledged, and a message
leaves the store as it is taken. With it, the rows stay stored, taken by the session's record
(``services.take_offline``), and are listed in :attr:`StoredDelivery.taken` with the outgoing count
that acknowledges them all; they leave the store once the client's ``h`` reaches that count
(:meth:`StoredDelivery.acknowledged`, after every read from the client and at a resume). A process
killed meanwhile loses none: at its next start the record has ended, and the rows are free again for
the account's next session (tests/integration/test_faults.py). A client that binds with XEP-0386 and
fetches the archive is not sent what the archive holds; those rows just go.

Hibernation and resumption (XEP-0198 §5). When the transport is lost, the session stops sending (no
``xmpp.drained`` comes any more), a copy of what its client has not acknowledged is stored, taken by it
(:meth:`StoredDelivery.hibernating`), and messages that come meanwhile are stored at once
(:meth:`StoredDelivery.store_while_away`). A stream that resumes the session takes its
:class:`HandOver`: the taken rows move with it, and if messages were stored while it was away, or a
delivery in pieces was under way, it goes on with what is still stored, after the stanzas it resends.

The end of a session, a crash included. What the client never acknowledged is stored again by the
session (``offline.store_or_bounce``), and then the rows it had taken go (``Taken.forget_all``). A
failure while a piece is sent ends the session: without stream management the rows of the piece not
yet sent were removed as they were taken, so they are held for the session's end to store; with it
they are still stored, and free again once its record has ended. A piece the session stops before its
end (it ended, or went on elsewhere) puts the rest back (``offline.put_back``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from xmppauth import archive, offline, sending, services, tasks
from xmppauth.proto.jid import JID
from xmppauth.proto.stream import C2SStream
from xmppauth.proto.xep0198_sm import StreamManagement
from xmppauth.proto.xep0203_delay import with_delay


class Session(Protocol):
    """What a delivery reads of its session, and how it sends it a stanza."""

    jid: JID | None
    session_id: int | None  # its sessions_acl.Session row: what holds the rows taken for it
    stream: C2SStream | None

    def may_receive(self, kind: str, stanza_type: str) -> bool: ...

    async def deliver(self, data: bytes, urgent: bool = True) -> None: ...


@dataclass(frozen=True, slots=True)
class HandOver:
    """What the delivery of a hibernated session gives the stream that resumes it."""

    taken: offline.Taken  # stored messages it was sent and has not acknowledged
    to_follow: bool  # messages were stored for it while away, or the rest of a delivery in pieces waits


class StoredDelivery:
    """The stored messages of one session: sent a piece at a time, forgotten once acknowledged."""

    def __init__(
        self,
        session: Session,
        *,
        is_open: Callable[[], bool],
        taken_over: Callable[[], bool],
        crash: Callable[[BaseException, str], Awaitable[None]],
        attempt: Callable[..., Awaitable[bool]],
        tell_transport: Callable[[str], Awaitable[bool]],
        hold: Callable[[list[bytes]], None],
    ) -> None:
        self._session = session
        self._is_open = is_open  # the stream is not closed (a hibernating session's is)
        self._taken_over = taken_over  # another stream resumed the session, or it has ended
        self._crash = crash  # end the session after a failure (never raises)
        self._attempt = attempt  # a step whose failure is logged, and whether it succeeded
        self._tell_transport = tell_transport  # an optional transport message, and whether it was taken
        self._hold = hold  # stanzas kept for the session's end to store (or bounce)
        self.taken = offline.Taken()  # stored messages sent and not yet acknowledged
        self.fetches_archive = False  # bound with Bind2: stored messages in the archive are not sent
        self._stored_while_away = 0  # messages for this session stored while it hibernated
        self._more = False  # stored messages wait to be sent once the client has read the last piece

    async def deliver(self) -> None:
        """Send the account's stored messages, a piece at a time (see the module's docstring)."""
        if self._more:
            return  # a piece is on its way: the next follows it (drained)
        more = True
        while more:
            more = await self._piece()
            if more and await self._tell_transport("xmpp.drain"):
                self._more = True
                return

    async def drained(self) -> None:
        """The transport says the client has read what it was sent (``xmpp.drained``): the next piece."""
        if self._more and self._is_open():
            self._more = False
            await self.deliver()

    async def _piece(self) -> bool:
        """One piece of :meth:`deliver`: whether more wait."""
        session = self._session
        jid = session.jid
        if (
            jid is None
            or jid.local is None
            or self._taken_over()
            or not session.may_receive("message", "chat")
        ):
            return False
        stream = session.stream
        sm = stream.sm if stream is not None else None
        holder = session.session_id if sm is not None else None  # without XEP-0198 nothing is acknowledged
        stored: list[tuple[int, bytes, str]] = []
        more = False
        done = 0
        fetched: list[int] = []  # XEP-0386 §2.3: in the archive, for a Bind2 client to fetch there
        try:
            stored, more = await services.take_offline(jid.local, holder, sending.piece_bytes())
            in_archive = await self._in_archive(jid, stored) if self.fetches_archive and stored else set()
            for id_, data, stamp in stored:
                if self._taken_over() or not self._is_open():
                    break
                if id_ in in_archive:
                    fetched.append(id_)
                    done += 1
                    continue
                if holder is not None:
                    self.taken.ids.append(id_)  # sent: forgotten when acknowledged or stored again
                await session.deliver(with_delay(data, jid.domain, stamp))
                done += 1
        except Exception as exc:
            if holder is None:
                self._hold([data for _, data, _ in stored[done:]])  # back to the store at the session's end
            # (taken rows not sent are free again once this session's record has ended)
            await self._crash(exc, "delivering stored messages")
            return False
        if sm is not None and self.taken.ids:
            self.taken.mark = sm.outbound
        if fetched and holder is not None:  # taken by this session: gone (without a holder, gone already)
            await self._attempt(
                "forgetting stored messages the archive holds", services.forget_offline, fetched
            )
        if done < len(stored):  # the session went on elsewhere or ended: the rest waits for the next one
            await self._attempt("putting back stored messages", offline.put_back, jid, stored[done:], holder)
            return False
        return more

    @staticmethod
    async def _in_archive(jid: JID, stored: list[tuple[int, bytes, str]]) -> set[int]:
        """The stored messages (row ids) that the account's archive holds, for a client that fetches them
        there (XEP-0386 §2.3): those with its ``<stanza-id/>`` whose copy the quota has not removed, kept
        from it now until the client has had time to fetch them."""
        ids = {id_: archive.archive_id_in(data, jid.bare) for id_, data, _ in stored}
        wanted = [archive_id for archive_id in ids.values() if archive_id is not None]
        held = await archive.keep_for_fetching(jid.local or "", wanted) if wanted else set()
        return {id_ for id_, archive_id in ids.items() if archive_id in held}

    async def acknowledged(self) -> None:
        """The client may have acknowledged every stored message it was sent: if so, they leave the store."""
        stream = self._session.stream
        sm = stream.sm if stream is not None else None
        forget = self.taken.forget_if_acknowledged
        await self._attempt("forgetting acknowledged stored messages", forget, sm)

    async def store_while_away(self, data: bytes, peer: str) -> bool:
        """A message for the hibernating session goes to the offline store at once (True), other
        stanzas wait in memory (offline.keep_while_away); ``peer`` is for the log."""
        jid = self._session.jid
        if jid is None or not await offline.keep_while_away(data, jid, peer):
            return False
        self._stored_while_away += 1
        return True

    def hibernating(self, sm: StreamManagement, peer: str) -> None:
        """The session begins to hibernate: a copy of the messages its client has not acknowledged goes
        to the store, taken by the session, so that a process that dies before the resume or the expiry
        leaves them to the next login; ``peer`` is for the log."""
        jid, session_id = self._session.jid, self._session.session_id
        if sm.unacked and jid is not None and session_id is not None:
            copies = self.taken.store_copies(list(sm.unacked), sm.outbound, jid, session_id)
            tasks.start(copies, name=f"{peer}: storing a copy of what a hibernating session holds")

    def hand_over(self) -> HandOver:
        """What a stream that resumes this hibernated session takes (:meth:`adopt`)."""
        return HandOver(taken=self.taken, to_follow=bool(self._stored_while_away) or self._more)

    def adopt(self, hand_over: HandOver) -> None:
        """This session resumes a hibernated one: its taken stored messages are now this one's to forget
        (the session then calls :meth:`acknowledged`, and :meth:`deliver` if ``to_follow``)."""
        self.taken = hand_over.taken
