"""Personal Eventing over real sockets (XEP-0163, issue 14; xmppauth/pep.py, xmppauth/caps.py).

Before, a PEP request to the account's bare JID was answered ``service-unavailable``: no avatar, no
OMEMO device list, so end-to-end encryption could not even be switched on. Each test uses accounts
of its own on one server. The clients here advertise their interest as real ones do: entity
capabilities (XEP-0115) in their presence, whose disco#info the server asks for and verifies.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator

import pytest

from tests.integration.rawclient import Session
from tests.integration.server import Server, running_server
from tests.integration.test_grants import app_password, forbidden

pytestmark = pytest.mark.integration

PASSWORD = "eventing"
NAMES = [f"{who}{n}" for n in range(1, 9) for who in ("ann", "ben", "cat", "dan")]
PUBSUB = "http://jabber.org/protocol/pubsub"
DEVICES = "eu.siacs.conversations.axolotl.devicelist"  # OMEMO's device list node (XEP-0384 0.3)
NODE = "https://xmppauth.test/pep-client"
CAPS = "http://jabber.org/protocol/caps"
DISCO = "http://jabber.org/protocol/disco#info"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("pep"), dict.fromkeys(NAMES, PASSWORD)) as srv:
        yield srv


def ver(features: list[str]) -> str:
    """XEP-0115 §5.1 for one identity (client/pc, no language, "PEP test") and ``features``."""
    text = "client/pc//PEP test<" + "".join(f"{feature}<" for feature in sorted(features))
    return base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()


def disco_answer(query: bytes, features: list[str]) -> str:
    """The client's answer to the server's disco#info query ``query`` (the iq it received)."""
    qid = re.search(rb"id='([^']+)'", query)
    node = re.search(rb"node='([^']+)'", query)
    assert qid, query
    assert node, query
    listed = "".join(f"<feature var='{f}'/>" for f in features)
    return (
        f"<iq type='result' id='{qid.group(1).decode()}'><query xmlns='{DISCO}' node='{node.group(1).decode()}'>"
        f"<identity category='client' type='pc' name='PEP test'/>{listed}</query></iq>"
    )


def online(
    server: Server, user: str, notify: tuple[str, ...] = (), answer: bool = True, own: bool = True
) -> Session:
    """``user`` bound and available, its presence with caps saying it wants ``notify`` nodes; it answers
    the server's disco#info query (unless ``answer`` is False). ``own``: a feature of its own makes
    its caps new to the server, so it is asked; without, the server may know them already."""
    session = Session(server, user, PASSWORD, software="pep tests")
    assert session.ok, session.reply
    features = [
        DISCO,
        *(f"{node}+notify" for node in notify),
        *([f"urn:xmppauth:test:{user}"] if own else []),
    ]
    caps = f"<c xmlns='{CAPS}' hash='sha-1' node='{NODE}' ver='{ver(features)}'/>" if notify else ""
    session.send(f"<presence><status>{user} here</status>{caps}</presence>")
    session.expect(f"{user} here</status>")
    if notify and answer:
        asked = session.expect(
            f"<iq[^>]*type=.get.[^>]*>\\s*<query xmlns=.{re.escape(DISCO)}.[^>]*/>\\s*</iq>"
        )
        session.send(disco_answer(asked, features))
    return session


def befriend(watcher: Session, watched: Session) -> None:
    """``watcher`` subscribes to ``watched``'s presence and ``watched`` approves (RFC 6121 §3.1)."""
    them, me = watched.jid.split("/")[0], watcher.jid.split("/")[0]
    watcher.send(f"<presence to='{them}' type='subscribe'/>")
    watched.expect(f"<presence(?=[^>]*from=.{re.escape(me)}.)(?=[^>]*type=.subscribe.)")
    watched.send(f"<presence to='{me}' type='subscribed'/>")
    watcher.expect(f"<presence(?=[^>]*from=.{re.escape(them)}.)(?=[^>]*type=.subscribed.)")


def publish(session: Session, node: str, item: str, item_id: str = "current", options: str = "") -> bytes:
    session.send(
        f"<iq type='set' id='pub-{item_id}'><pubsub xmlns='{PUBSUB}'><publish node='{node}'>"
        f"<item id='{item_id}'>{item}</item></publish>{options}</pubsub></iq>"
    )
    return session.expect(f"id=.pub-{re.escape(item_id)}.[^>]*?(/>|>.*?</iq>)")


def devicelist(*devices: int) -> str:
    inner = "".join(f"<device id='{d}'/>" for d in devices)
    return f"<list xmlns='eu.siacs.conversations.axolotl'>{inner}</list>"


def event(session: Session, owner: str, node: str = DEVICES, timeout: float = 5.0) -> bytes:
    """The next PEP notification from ``owner``'s ``node``."""
    return session.expect(
        f"<message(?=[^>]*from=.{owner}@localhost.)[^>]*>\\s*<event xmlns=.{re.escape(PUBSUB)}#event.>"
        f"\\s*<items node=.{re.escape(node)}.>.*?</message>",
        timeout,
    )


def options(**fields: str) -> str:
    values = "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in fields.items())
    form_type = f"<field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#publish-options</value></field>"
    return (
        f"<publish-options><x xmlns='jabber:x:data' type='submit'>{form_type}{values}</x></publish-options>"
    )


def test_disco_lists_what_the_server_and_the_account_support(server: Server) -> None:
    """Issue 14 §5: exactly the protocols served, on the server's JID and on the account's bare JID."""
    ann = online(server, "ann8")
    ann.send(f"<iq type='get' id='srv' to='localhost'><query xmlns='{DISCO}'/></iq>")
    served = set(re.findall(rb"<feature var=.([^'\"]+).", ann.expect("id=.srv.[^>]*>.*?</iq>")))
    assert served == {
        *(b"urn:xmpp:carbons:2", b"urn:xmpp:ping", b"urn:xmpp:blocking", b"urn:xmpp:mfa:0", b"msgoffline"),
        *(DISCO.encode(), b"http://jabber.org/protocol/disco#items", b"http://jabber.org/protocol/commands"),
    }
    ann.send(f"<iq type='get' id='acc' to='ann8@localhost'><query xmlns='{DISCO}'/></iq>")
    account = set(re.findall(rb"<feature var=.([^'\"]+).", ann.expect("id=.acc.[^>]*>.*?</iq>")))
    own = {
        b"urn:xmpp:mam:2",
        b"urn:xmpp:mam:2#extended",
        b"urn:xmpp:sid:0",
        b"urn:xmpp:cam:0",
        PUBSUB.encode(),
    }
    assert own <= account
    assert {f for f in account - own if not f.startswith(PUBSUB.encode() + b"#")} == {
        DISCO.encode(),
        b"urn:xmpp:ping",
    }
    ann.close()


def test_the_account_says_it_is_a_pep_service(server: Server) -> None:
    ann = online(server, "ann1")
    ann.send(f"<iq type='get' id='info' to='ann1@localhost'><query xmlns='{DISCO}'/></iq>")
    info = ann.expect("id=.info.[^>]*>.*?</iq>")
    assert re.search(rb"<identity category=.pubsub. type=.pep.", info), info
    for feature in (
        "publish",
        "publish-options",
        "auto-create",
        "subscribe",
        "access-presence",
        "retrieve-items",
    ):
        assert f"var='{PUBSUB}#{feature}'".encode() in info.replace(b'"', b"'"), feature
    ann.close()


def test_a_published_device_list_reaches_a_subscribed_contact_that_wants_it(server: Server) -> None:
    ann, ben = online(server, "ann2", (DEVICES,)), online(server, "ben2", (DEVICES,))
    dan = online(server, "dan2", (DEVICES,))  # wants it too, but does not see ann's presence
    befriend(ben, ann)
    result = publish(ann, DEVICES, devicelist(1001, 1002))
    assert re.search(rb"type=.result.", result), result
    # the owner's own resource with the interest gets it too (XEP-0163 §4.1), before the result
    assert re.search(rb"<message[^>]*type=.headline.[^>]*>.*1002.*</message>", result), result
    got = event(ben, "ann2")
    assert b"<device id='1001'/>" in got.replace(b'"', b"'"), got
    assert re.search(rb"<item id=.current.>", got), got
    assert re.search(rb"type=.headline.", got), got
    assert b"1001" not in dan.quiet(0.5)  # no presence subscription: not implicitly subscribed

    # a contact reads it as a client fetching a bundle would; a stranger is told why not (§6.5.1)
    ben.send(
        f"<iq type='get' id='read' to='ann2@localhost'><pubsub xmlns='{PUBSUB}'><items node='{DEVICES}'/></pubsub></iq>"
    )
    read = ben.expect("id=.read.[^>]*>.*?</iq>")
    assert b"1001" in read, read
    assert re.search(rb"type=.result.", read), read
    dan.send(
        f"<iq type='get' id='read' to='ann2@localhost'><pubsub xmlns='{PUBSUB}'><items node='{DEVICES}'/></pubsub></iq>"
    )
    refused = dan.expect("id=.read.[^>]*>.*?</iq>")
    assert b"<not-authorized" in refused, refused
    assert b"presence-subscription-required" in refused, refused
    # only the account publishes to its own service
    ben.send(
        f"<iq type='set' id='evil' to='ann2@localhost'><pubsub xmlns='{PUBSUB}'><publish node='{DEVICES}'>"
        f"<item id='current'>{devicelist(666)}</item></publish></pubsub></iq>"
    )
    assert b"<forbidden" in ben.expect("id=.evil.[^>]*>.*?</iq>")
    assert b"666" not in ann.quiet(0.3)
    for s in (ann, ben, dan):
        s.close()


def test_a_contact_coming_online_gets_the_last_item_with_its_stamp(server: Server) -> None:
    ann, cat = online(server, "ann3", (DEVICES,)), online(server, "cat3")
    befriend(cat, ann)
    publish(ann, DEVICES, devicelist(31))
    publish(ann, DEVICES, devicelist(32))  # the same item id again: it replaces the first
    cat.close()
    later = online(server, "cat3", (DEVICES,))
    got = event(later, "ann3")
    assert b"<device id='32'/>" in got.replace(b'"', b"'"), got
    assert b"<device id='31'/>" not in got.replace(b'"', b"'"), got
    assert re.search(rb"<delay xmlns=.urn:xmpp:delay. stamp=.20\d\d-", got), got
    assert b"31" not in later.quiet(0.3)  # one last item, not the history
    ann.close()
    later.close()


def test_a_client_that_wants_nothing_or_lies_about_its_caps_hears_nothing(server: Server) -> None:
    ann, ben = online(server, "ann4", (DEVICES,)), online(server, "ben4")  # ben: no caps at all
    dan = online(server, "dan4", (DEVICES,), answer=False)  # dan never answers the query
    befriend(ben, ann)
    befriend(dan, ann)
    assert b"<event" in publish(ann, DEVICES, devicelist(41))
    assert b"41" not in ben.quiet(0.3)
    assert b"41" not in dan.quiet(0.3)
    # a client whose disco#info does not hash to the ver it advertised: its answer is not cached for
    # another client claiming the same ver (XEP-0115 §5.4), so that one is asked again
    features = [DISCO, f"{DEVICES}+notify"]
    liar = Session(server, "cat4", PASSWORD, software="pep tests")
    liar.send(f"<presence><c xmlns='{CAPS}' hash='sha-1' node='{NODE}' ver='{ver([DISCO])}'/></presence>")
    asked = liar.expect(f"<iq[^>]*type=.get.[^>]*>\\s*<query xmlns=.{re.escape(DISCO)}.[^>]*/>\\s*</iq>")
    liar.send(disco_answer(asked, features))
    honest = Session(server, "cat4", PASSWORD, software="pep tests 2")
    honest.send(f"<presence><c xmlns='{CAPS}' hash='sha-1' node='{NODE}' ver='{ver([DISCO])}'/></presence>")
    honest.expect(f"<iq[^>]*type=.get.[^>]*>\\s*<query xmlns=.{re.escape(DISCO)}.[^>]*/>\\s*</iq>")  # asked
    for s in (ann, ben, dan, liar, honest):
        s.close()


def test_publish_options_are_preconditions_and_access_models_hold(server: Server) -> None:
    ann, ben = (
        online(server, "ann5", ("urn:xmpp:avatar:metadata",)),
        online(server, "ben5", ("urn:xmpp:avatar:metadata",)),
    )
    befriend(ben, ann)
    bundle = "eu.siacs.conversations.axolotl.bundles:7"
    first = publish(
        ann, bundle, "<bundle xmlns='eu.siacs.conversations.axolotl'/>", options=options(access_model="open")
    )
    assert re.search(rb"type=.result.", first), first
    # the node exists as open: asking for another model is a precondition that fails (XEP-0060 §7.1.5)
    clash = publish(
        ann,
        bundle,
        "<bundle xmlns='eu.siacs.conversations.axolotl'/>",
        "b",
        options(access_model="whitelist"),
    )
    assert b"<conflict" in clash, clash
    assert b"precondition-not-met" in clash, clash
    dan = online(server, "dan5")  # a stranger may read an open node
    dan.send(
        f"<iq type='get' id='b' to='ann5@localhost'><pubsub xmlns='{PUBSUB}'><items node='{bundle}'/></pubsub></iq>"
    )
    assert b"<bundle" in dan.expect("id=.b.[^>]*>.*?</iq>")

    # a whitelist node: the owner alone, whatever the subscription
    secret = "urn:xmpp:avatar:metadata"
    own = publish(
        ann, secret, "<metadata xmlns='urn:xmpp:avatar:metadata'/>", options=options(access_model="whitelist")
    )
    assert b"<event" in own, own  # the owner hears of it
    assert b"avatar:metadata" not in ben.quiet(0.3)
    ben.send(
        f"<iq type='get' id='w' to='ann5@localhost'><pubsub xmlns='{PUBSUB}'><items node='{secret}'/></pubsub></iq>"
    )
    assert b"closed-node" in ben.expect("id=.w.[^>]*>.*?</iq>")
    bad = publish(ann, "x", "<x xmlns='urn:example'/>", "y", options(max_items="-1"))
    assert b"<not-acceptable" in bad, bad
    for s in (ann, ben, dan):
        s.close()


def test_blocking_and_the_grant_keep_notifications_away(server: Server) -> None:
    ann, ben = online(server, "ann6", (DEVICES,)), online(server, "ben6", (DEVICES,))
    befriend(ben, ann)
    ann.send(
        "<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='ben6@localhost'/></block></iq>"
    )
    ann.expect("id=.blk.")
    publish(ann, DEVICES, devicelist(61))
    assert b"61" not in ben.quiet(0.4)  # XEP-0163 §4.3.3: nothing to a blocked contact
    ann.send(
        "<iq type='set' id='unb'><unblock xmlns='urn:xmpp:blocking'><item jid='ben6@localhost'/></unblock></iq>"
    )
    ann.expect("id=.unb.")
    publish(ann, DEVICES, devicelist(62))
    assert b"62" in event(ben, "ann6")

    # an app password without the presence scope neither publishes nor reads
    _, secret = app_password(server, "ann6", "bot", "messages.send,messages.receive")
    bot = Session(server, "ann6", secret)
    assert bot.ok
    forbidden(publish(bot, DEVICES, devicelist(1), "b1"), "pep.write")
    bot.send(f"<iq type='get' id='r'><pubsub xmlns='{PUBSUB}'><items node='{DEVICES}'/></pubsub></iq>")
    forbidden(bot.expect("id=.r.[^>]*>.*?</iq>"), "presence")
    # one with presence (the read-only role) reads the account's device list, publishes nothing:
    # a device list of its choosing would have the contacts encrypt to it
    _, secret = app_password(server, "ann6", "read-only", "messages.receive,presence,roster.read")
    reader = Session(server, "ann6", secret)
    assert reader.ok
    reader.send(f"<iq type='get' id='o'><pubsub xmlns='{PUBSUB}'><items node='{DEVICES}'/></pubsub></iq>")
    assert b"62" in reader.expect("id=.o.[^>]*>.*?</iq>")
    forbidden(publish(reader, DEVICES, devicelist(666), "evil"), "pep.write")
    reader.send(
        f"<iq type='set' id='del'><pubsub xmlns='{PUBSUB}#owner'><delete node='{DEVICES}'/></pubsub></iq>"
    )
    forbidden(reader.expect("id=.del.[^>]*>.*?</iq>"), "pep.write")
    assert b"666" not in ben.quiet(0.3)
    for s in (ann, ben, bot, reader):
        s.close()


def test_an_explicit_subscription_gets_notifications_without_caps(server: Server) -> None:
    ann, ben = online(server, "ann7"), online(server, "ben7")
    befriend(ben, ann)
    publish(ann, "urn:xmpp:microblog:0", "<entry xmlns='http://www.w3.org/2005/Atom'>first</entry>", "e1")
    ben.send(
        f"<iq type='set' id='sub' to='ann7@localhost'><pubsub xmlns='{PUBSUB}'>"
        f"<subscribe node='urn:xmpp:microblog:0' jid='{ben.jid}'/></pubsub></iq>"
    )
    answer = ben.expect("id=.sub.[^>]*>.*?</iq>")
    assert b"subscription='subscribed'" in answer.replace(b'"', b"'"), answer
    assert b"first" in event(ben, "ann7", "urn:xmpp:microblog:0")  # the last item, on subscription
    publish(ann, "urn:xmpp:microblog:0", "<entry xmlns='http://www.w3.org/2005/Atom'>second</entry>", "e2")
    assert b"second" in event(ben, "ann7", "urn:xmpp:microblog:0")
    # one may subscribe only oneself (XEP-0060 §6.1.3.1)
    ben.send(
        f"<iq type='set' id='sub2' to='ann7@localhost'><pubsub xmlns='{PUBSUB}'>"
        f"<subscribe node='urn:xmpp:microblog:0' jid='cat7@localhost'/></pubsub></iq>"
    )
    assert b"invalid-jid" in ben.expect("id=.sub2.[^>]*>.*?</iq>")
    for s in (ann, ben):
        s.close()


def test_a_blocked_contact_reads_nothing_and_a_blocked_full_jid_hears_nothing(server: Server) -> None:
    """Found by a black-box attack: blocking stopped notifications but a blocked subscriber still read the
    items on request, subscribed to open nodes, and a full JID blocked still got notifications."""
    ann, ben = online(server, "ann1", (DEVICES,)), online(server, "ben1", (DEVICES,))
    befriend(ben, ann)
    publish(ann, DEVICES, devicelist(11))
    ben.quiet(0.3)
    ann.send(
        "<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='ben1@localhost'/></block></iq>"
    )
    ann.expect("id=.blk.")
    publish(ann, DEVICES, devicelist(12))
    ben.send(
        f"<iq type='get' id='read' to='ann1@localhost'><pubsub xmlns='{PUBSUB}'><items node='{DEVICES}'/></pubsub></iq>"
    )
    refused = ben.expect("id=.read.[^>]*>.*?</iq>")
    assert b"<service-unavailable" in refused, refused
    assert b"12" not in refused
    assert b"block" not in refused  # not a word of blocking (XEP-0191 §3.3)
    ben.send(
        f"<iq type='set' id='sub' to='ann1@localhost'><pubsub xmlns='{PUBSUB}'>"
        f"<subscribe node='{DEVICES}' jid='{ben.jid}'/></pubsub></iq>"
    )
    assert b"<service-unavailable" in ben.expect("id=.sub.[^>]*>.*?</iq>")
    ann.send("<iq type='set' id='unb'><unblock xmlns='urn:xmpp:blocking'/></iq>")
    ann.expect("id=.unb.")
    # a block of one full JID: that session hears nothing, the account's others still do
    other = online(server, "ben1", (DEVICES,), own=False)
    ann.send(
        f"<iq type='set' id='blk2'><block xmlns='urn:xmpp:blocking'><item jid='{ben.jid}'/></block></iq>"
    )
    ann.expect("id=.blk2.")
    publish(ann, DEVICES, devicelist(13))
    other.expect("<device id=.13./>")
    assert b"<device id='13'/>" not in ben.quiet(0.4).replace(b'"', b"'")
    for s in (ann, ben, other):
        s.close()


def test_an_items_answer_is_the_newest_that_fit_not_the_whole_node(server: Server) -> None:
    """Found by a black-box attack: a node of many large items was answered in one stanza of every item
    (tens of MB built in memory, then the client dropped for not reading it fast enough)."""
    ann = online(server, "ann3")
    config = options(max_items="max")
    for n in range(12):
        answer = publish(
            ann, "big", f"<blob xmlns='urn:example'>{n:02d}{'x' * 100_000}</blob>", f"i{n}", config
        )
        assert re.search(rb"type=.result.", answer), answer[:300]
    ann.send(
        f"<iq type='get' id='all' to='ann3@localhost'><pubsub xmlns='{PUBSUB}'><items node='big'/></pubsub></iq>"
    )
    got = ann.expect("id=.all.[^>]*>.*?</iq>", timeout=10)
    ids = re.findall(rb"<item id=.(i\d+).>", got)
    assert ids == [b"i7", b"i8", b"i9", b"i10", b"i11"], ids  # the newest five (512 KiB), in order
    assert len(got) < 600_000
    ann.close()


def test_an_accounts_items_are_held_within_its_byte_quota(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Found by a black-box attack: nothing bounded what an account stored (200 nodes of 256 items of a
    stanza each). XMPP_PEP_MAX_BYTES holds all its nodes together; a publish beyond stores nothing."""
    quota = {"XMPP_PEP_MAX_BYTES": "30000"}
    with running_server(tmp_path_factory.mktemp("pep-quota"), {"ann9": PASSWORD}, **quota) as small:
        ann = online(small, "ann9")

        def blob(n: int, size: int) -> str:
            return f"<blob xmlns='urn:example'>{n:02d}{'é' * (size // 2)}</blob>"  # 2 UTF-8 bytes a character

        assert b"type='result'" in publish(ann, "one", blob(1, 12_000), "a").replace(b'"', b"'")
        assert b"type='result'" in publish(ann, "two", blob(2, 12_000), "b").replace(b'"', b"'")
        refused = publish(ann, "three", blob(3, 12_000), "c")
        assert b"<policy-violation" in refused, refused
        assert re.search(rb"over its limit of 30000", refused), refused
        ann.send(f"<iq type='get' id='g3'><pubsub xmlns='{PUBSUB}'><items node='three'/></pubsub></iq>")
        assert b"item-not-found" in ann.expect("id=.g3.[^>]*>.*?</iq>")  # neither the item nor the node
        # the same item published again replaces it: within the quota
        assert b"type='result'" in publish(ann, "two", blob(22, 12_000), "b").replace(b'"', b"'")
        ann.send(
            f"<iq type='set' id='r'><pubsub xmlns='{PUBSUB}'><retract node='two'><item id='b'/></retract>"
            "</pubsub></iq>"
        )
        ann.expect("id=.r.[^>]*type=.result.|type=.result.[^>]*id=.r.")
        assert b"type='result'" in publish(ann, "three", blob(3, 12_000), "c").replace(b'"', b"'")
        ann.send(f"<iq type='get' id='g1'><pubsub xmlns='{PUBSUB}'><items node='one'/></pubsub></iq>")
        assert b"<blob xmlns='urn:example'>01" in ann.expect("id=.g1.[^>]*>.*?</iq>").replace(b'"', b"'")
        # item ids count too (found by a black-box attack: long ids with empty payloads were free)
        answers = [
            publish(ann, "ids", "<x xmlns='urn:example'/>", f"{n:02d}{'i' * 1000}", options(max_items="max"))
            for n in range(10)
        ]
        accepted = [b"type='result'" in answer.replace(b'"', b"'") for answer in answers]
        assert 0 < accepted.index(False) < 9, accepted  # some fit in the ~6 KB left, not all
        assert b"<policy-violation" in answers[accepted.index(False)]
        ann.close()
