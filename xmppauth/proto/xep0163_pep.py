"""XEP-0163 Personal Eventing Protocol: the XEP-0060 subset the account's bare JID serves.

Implements, of XEP-0060 1.30: publish (§7.1, one item, one payload, ``<publish-options/>`` as the
preconditions of §7.1.5), retract (§7.2), retrieve items (§6.5), subscribe and unsubscribe (§6.1,
§6.2; XEP-0163 §5 makes them a MUST), create (§8.1), configure (§8.2) and delete nodes (§8.4); the
access models open, presence, roster, whitelist (§4.5); the notifications of §7.1.2.1, §7.2.2.1 and
§8.4.2, addressed as XEP-0163 §4.3 says; XEP-0115 (1.6) for the "+notify" filter of §9.2 (the
presence's ``<c/>``, the §5.1 verification string checked as §5.4 says). Other pubsub requests get
``feature-not-implemented`` with the ``<unsupported feature/>`` of XEP-0060 §10.

The driver stores nodes and items, knows the owner's presence subscribers and verified caps, and
owes XEP-0163 §4.3.3 (nothing to a JID the owner blocked, XEP-0191) and XEP-0060 §7.1.2 (an ItemID
published again replaces its item; a full node drops its oldest).

Choices where the XEPs leave room: refusals always carry a ``<text/>``; several ``<item/>`` in a
publish are ``bad-request`` + ``<invalid-payload/>`` (no batches since XEP-0060 1.13), as is a
payload in no namespace or jabber:client; a publish-options field unknown here, or a value no node
here takes, is ``conflict`` + ``<precondition-not-met/>`` (§7.1.5 "MUST reject" names no condition),
an ill-formed value ``not-acceptable`` (XEP-0004 §4); "roster" access needs a from/both presence
subscription and an allowed group (§6.5.1, the stricter reading); "whitelist" is the owner alone.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import secrets
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from lxml import etree

from . import ns
from .errors import StanzaErrorCondition
from .jid import JID, InvalidJID, parse_jid
from .replies import Refusal, iq_error
from .xml import escape_attr, serialize
from .xml_names import parse_element

PUBSUB = ns.PUBSUB
PUBSUB_OWNER = ns.PUBSUB_OWNER
PUBSUB_EVENT = f"{PUBSUB}#event"
PUBSUB_ERRORS = f"{PUBSUB}#errors"
PUBLISH_OPTIONS = f"{PUBSUB}#publish-options"  # FORM_TYPE of <publish-options/> (§7.1.5)
NODE_CONFIG = f"{PUBSUB}#node_config"  # FORM_TYPE of node configuration (§16.4.4)
CAPS = "http://jabber.org/protocol/caps"  # XEP-0115
ADDRESS = "http://jabber.org/protocol/address"  # XEP-0033, the "replyto" of XEP-0163 §4.3.1
IDENTITY = ("pubsub", "pep")  # XEP-0163 §6.1: category and type the bare JID adds to its disco#info
MAX_NODE_BYTES = MAX_ITEM_ID_BYTES = 1023  # no XEP bound: that of a JID part (RFC 7622)

# XEP-0163 §6.1, XEP-0060 §10: the bare JID's disco#info features, each a part of this module (auto-
# create: check_publish_options(None, ...); auto-subscribe, filtered-notifications: receives_notification).
_FEATURE_NAMES = (
    "access-open access-presence access-roster access-whitelist auto-create auto-subscribe config-node "
    "config-node-max create-and-configure create-nodes delete-items delete-nodes filtered-notifications "
    "item-ids last-published multi-items persistent-items publish publish-options retract-items "
    "retrieve-items subscribe"
)
FEATURES = tuple(f"{PUBSUB}#{name}" for name in _FEATURE_NAMES.split())

_Q_PUBSUB = ns.qname(PUBSUB, "pubsub")
_Q_OWNER_PUBSUB = ns.qname(PUBSUB_OWNER, "pubsub")
_Q_ITEM = ns.qname(PUBSUB, "item")
_Q_X = ns.qname(ns.DATA_FORMS, "x")
_Q_FIELD = ns.qname(ns.DATA_FORMS, "field")
_Q_VALUE = ns.qname(ns.DATA_FORMS, "value")
_NUMBER = re.compile(r"[0-9]{1,9}")  # no sign, no spaces, below 2**31: XML Schema's xs:int range

AccessModel = Literal["presence", "open", "whitelist", "roster"]
SendLast = Literal["never", "on_sub", "on_sub_and_presence"]
Relation = Literal["self", "subscribed", "roster", "none"]
Options = dict[str, list[str]]  # a submitted form's fields by var, FORM_TYPE left out
Groups = Collection[str]  # the roster groups a contact is in
Fields = Mapping[str, Sequence[str]]
_BAD, _FNI = StanzaErrorCondition.BAD_REQUEST, StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED


class Unsupported(Refusal):
    """``feature-not-implemented`` + ``<unsupported feature/>`` (XEP-0060 §10); see :func:`error_reply`."""

    def __init__(self, feature: str, text: str) -> None:
        super().__init__(_FNI, text, application=(PUBSUB_ERRORS, "unsupported"))
        self.feature = feature


def error_reply(stanza: etree._Element, refusal: Refusal) -> etree._Element:
    """``iq_error`` for a pubsub request, with the ``feature`` of an :class:`Unsupported`."""
    reply = iq_error(stanza, refusal)
    if isinstance(refusal, Unsupported):
        for element in reply.iter(ns.qname(PUBSUB_ERRORS, "unsupported")):
            element.set("feature", refusal.feature)
    return reply


def _refusal(condition: StanzaErrorCondition, text: str, app: str | None = None) -> Refusal:
    return Refusal(condition, text, application=(PUBSUB_ERRORS, app) if app else None)


def _bad(text: str, app: str | None = None) -> Refusal:
    return _refusal(_BAD, text, app)


def _unacceptable(text: str, app: str | None = None) -> Refusal:
    return _refusal(StanzaErrorCondition.NOT_ACCEPTABLE, text, app)


@dataclass(frozen=True, slots=True)
class Publish:  # §7.1: item is the one payload element; item_id None: name it with new_item_id()
    node: str
    item_id: str | None
    item: etree._Element
    options: Options = dataclasses.field(default_factory=dict)  # <publish-options/>, §7.1.5


@dataclass(frozen=True, slots=True)
class Retract:  # §7.2: notify is the request's attribute (NodeConfig.notify_retract counts too)
    node: str
    item_id: str
    notify: bool = False


@dataclass(frozen=True, slots=True)
class Items:  # §6.5: all items, the max_items most recent, or those named by item_ids
    node: str
    max_items: int | None = None
    item_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete:  # §8.4, owner namespace: then delete_message to the subscribers
    node: str


@dataclass(frozen=True, slots=True)
class Create:  # §8.1: options from <configure/>, empty for the defaults (apply_configuration)
    node: str
    options: Options = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConfigureGet:  # §8.2.1, owner namespace: answer with configure_form
    node: str


@dataclass(frozen=True, slots=True)
class ConfigureSet:  # §8.2.4, owner namespace: options None is a cancelled form (nothing changes)
    node: str
    options: Options | None


@dataclass(frozen=True, slots=True)
class Subscribe:  # §6.1: honour it only after check_subscriber
    node: str
    jid: JID


@dataclass(frozen=True, slots=True)
class Unsubscribe:  # §6.2: a subid is ignored by a service without subscription ids (§6.2.3.5)
    node: str
    jid: JID
    subid: str | None = None


Request = Publish | Retract | Items | Delete | Create | ConfigureGet | ConfigureSet | Subscribe | Unsubscribe


def check_node(value: str | None, *, instant: bool = False) -> str:
    """A NodeID as a request names it (not empty, at most :data:`MAX_NODE_BYTES`); missing, it is
    ``bad-request``, or asking for an instant node (§8.1.1) ``not-acceptable``, + ``<nodeid-required/>``."""
    if not value:
        if instant:
            raise _unacceptable("PEP has no instant nodes: name the node to create", "nodeid-required")
        raise _bad("the request names no node (a 'node' attribute)", "nodeid-required")
    if len(value.encode()) > MAX_NODE_BYTES:
        raise _unacceptable(f"node names are at most {MAX_NODE_BYTES} bytes long")
    return value


def _item_id(item: etree._Element) -> str | None:
    value = item.get("id")
    if value == "":
        raise _bad("an item id is never empty: leave the attribute out to have one made")
    if value is not None and len(value.encode()) > MAX_ITEM_ID_BYTES:
        raise _unacceptable(f"item ids are at most {MAX_ITEM_ID_BYTES} bytes long")
    return value


def _boolean(value: str, what: str, condition: StanzaErrorCondition = _BAD) -> bool:
    """xs:boolean, as the schemas and XEP-0004 §3.3 have it."""
    if value in ("1", "true", "0", "false"):
        return value in ("1", "true")
    raise _refusal(condition, f"{what} is a boolean (true, false, 1 or 0), not {value[:40]!r}")


def _form(container: etree._Element, form_type: str) -> Options | None:
    """The fields of the submitted form in ``container`` (no form: none, cancelled: None); not
    submitted, a field without var or twice, a FORM_TYPE but ``form_type``: ``bad-request``."""
    x = container.find(_Q_X)
    if x is None:
        return {}
    kind = x.get("type", "")
    if kind == "cancel":
        return None
    if kind != "submit":
        raise _bad(f"<{etree.QName(container).localname}/> takes a form of type 'submit', not {kind[:20]!r}")
    fields: Options = {}
    for field in x.iterchildren(_Q_FIELD):
        var = field.get("var")
        if not var or var in fields:
            raise _bad(f"each field of a submitted form has a 'var' of its own, not {var!r:.80}")
        fields[var] = [value.text or "" for value in field.iterchildren(_Q_VALUE)]
    if fields.pop("FORM_TYPE", None) != [form_type]:
        raise _bad(f"the form's FORM_TYPE must be {form_type}")
    return fields


def _jid(element: etree._Element) -> JID:
    value = element.get("jid")
    if not value:
        raise _bad(f"<{etree.QName(element).localname}/> needs the subscriber's 'jid'", "jid-required")
    try:
        return parse_jid(value)
    except InvalidJID as exc:
        raise _bad(f"the 'jid' is not a JID: {exc}", "invalid-jid") from None


def _publish(action: etree._Element, companion: etree._Element | None) -> Publish:
    node = check_node(action.get("node"))
    items = list(action.iterchildren(_Q_ITEM))
    if not items:  # §7.1.3.7: PEP nodes are persistent, so a publish carries an item
        raise _bad("publish an <item/> with one payload element", "item-required")
    if len(items) > 1:
        raise _bad("publish one <item/> per request (batch publishing was removed)", "invalid-payload")
    payloads = list(items[0].iterchildren("{*}*"))
    if not payloads:  # §7.1.3.7: and PEP nodes deliver payloads
        raise _bad("the <item/> has no payload element", "payload-required")
    stray_text = (items[0].text or "").strip() or any((p.tail or "").strip() for p in payloads)
    if len(payloads) > 1 or stray_text:
        raise _bad("an <item/> holds exactly one payload element and nothing else", "invalid-payload")
    if etree.QName(payloads[0]).namespace in (None, ns.CLIENT):
        raise _bad("the payload element needs a namespace of its own", "invalid-payload")
    options = {} if companion is None else _form(companion, PUBLISH_OPTIONS)
    if options is None:
        raise _bad("<publish-options/> takes a submitted form, not a cancelled one")
    return Publish(node, _item_id(items[0]), payloads[0], options)


def _retract(action: etree._Element, _: etree._Element | None) -> Retract:
    node = check_node(action.get("node"))
    items = list(action.iterchildren(_Q_ITEM))
    if not items or not items[0].get("id"):  # §7.2.3.4
        raise _bad("name the item to retract: <item id='...'/>", "item-required")
    if len(items) > 1:  # §7.2.1: "MUST contain one <item/> element"
        raise _bad("retract one item per request")
    notify = action.get("notify")
    return Retract(node, str(_item_id(items[0])), notify is not None and _boolean(notify, "'notify'"))


def _items(action: etree._Element, _: etree._Element | None) -> Items:
    node = check_node(action.get("node"))
    limit = action.get("max_items")
    if limit is not None and (not _NUMBER.fullmatch(limit) or int(limit) == 0):
        raise _bad(f"max_items is a positive whole number, not {limit[:20]!r}")
    ids: dict[str, None] = {}
    for item in action.iterchildren(_Q_ITEM):
        item_id = _item_id(item)
        if item_id is None:
            raise _bad("each <item/> of an items request names an item by its 'id'")
        ids[item_id] = None
    return Items(node, int(limit) if limit is not None else None, tuple(ids))


def _create(action: etree._Element, companion: etree._Element | None) -> Create:
    node = check_node(action.get("node"), instant=True)
    if companion is not None and companion.get("node") is not None:  # §8.1.3
        raise _bad("the <configure/> that follows <create/> names no node of its own")
    return Create(node, (_form(companion, NODE_CONFIG) if companion is not None else None) or {})


def _subscribe(action: etree._Element, companion: etree._Element | None) -> Subscribe:
    if companion is not None:
        raise Unsupported("subscription-options", "subscription options are not supported")
    return Subscribe(check_node(action.get("node")), _jid(action))


def _unsubscribe(action: etree._Element, _: etree._Element | None) -> Unsubscribe:
    return Unsubscribe(check_node(action.get("node")), _jid(action), action.get("subid") or None)


_Handler = Callable[[etree._Element, etree._Element | None], Request]
# (namespace, element) -> (its iq type, parser, the one element the schema lets follow it)
_REQUESTS: dict[tuple[str, str], tuple[str, _Handler | None, str | None]] = {
    (PUBSUB, "publish"): ("set", _publish, "publish-options"),
    (PUBSUB, "retract"): ("set", _retract, None),
    (PUBSUB, "items"): ("get", _items, None),
    (PUBSUB, "create"): ("set", _create, "configure"),
    (PUBSUB, "subscribe"): ("set", _subscribe, "options"),
    (PUBSUB, "unsubscribe"): ("set", _unsubscribe, None),
    (PUBSUB_OWNER, "delete"): ("set", lambda action, _: Delete(check_node(action.get("node"))), None),
    (PUBSUB_OWNER, "configure"): ("get set", None, None),  # §8.2: the iq type tells which
}
# Requests of XEP-0060 this service does not offer, with the feature §10 names for each.
_UNSUPPORTED = {
    (PUBSUB, "subscriptions"): "retrieve-subscriptions",
    (PUBSUB, "affiliations"): "retrieve-affiliations",
    (PUBSUB, "options"): "subscription-options",
    (PUBSUB, "default"): "retrieve-default-sub",
    (PUBSUB_OWNER, "default"): "retrieve-default",
    (PUBSUB_OWNER, "purge"): "purge-nodes",
    (PUBSUB_OWNER, "subscriptions"): "manage-subscriptions",
    (PUBSUB_OWNER, "affiliations"): "modify-affiliations",
}


def parse_pubsub(iq_type: str, payload: etree._Element) -> Request:
    """The request in ``payload``, the ``<pubsub/>`` (either namespace) of an iq of ``iq_type``.

    Only children in the ``<pubsub/>``'s own namespace count (an XEP-0059 ``<set/>`` is ignored):
    one request, followed at most by the one element XEP-0060's schema allows after publish, create
    and subscribe. Raises :class:`Refusal` (:class:`Unsupported` for requests PEP does not offer).
    """
    if payload.tag not in (_Q_PUBSUB, _Q_OWNER_PUBSUB):
        raise Refusal(_FNI, "not a <pubsub/> request")
    namespace = PUBSUB if payload.tag == _Q_PUBSUB else PUBSUB_OWNER
    children = [c for c in payload.iterchildren("{*}*") if etree.QName(c).namespace == namespace]
    if not children:
        raise _bad("the <pubsub/> holds no request")
    action, rest = children[0], children[1:]
    name = etree.QName(action).localname
    if (namespace, name) in _UNSUPPORTED:
        raise Unsupported(_UNSUPPORTED[namespace, name], f"<{name}/> is not offered by this PEP service")
    if (namespace, name) not in _REQUESTS:
        raise Refusal(_FNI, f"<{name}/> is not a pubsub request")
    want, handler, follower = _REQUESTS[namespace, name]
    if iq_type not in want.split():
        raise _bad(f"<{name}/> goes in an iq of type {' or '.join(want.split())}, not {iq_type[:10]!r}")
    if len(rest) > 1 or (rest and etree.QName(rest[0]).localname != follower):
        raise _bad(f"one request per <pubsub/>: <{name}/> cannot be combined with what follows it")
    if handler is not None:
        return handler(action, rest[0] if rest else None)
    node = check_node(action.get("node"))
    if iq_type == "get":
        return ConfigureGet(node)
    if action.find(_Q_X) is None:
        raise _bad("a configuration is submitted as a data form in <configure/>")
    return ConfigureSet(node, _form(action, NODE_CONFIG))


def check_subscriber(request: Subscribe | Unsubscribe, sender: JID) -> None:
    """§6.1.3.1 and §6.2.3.3: one may (un)subscribe only a JID of one's own account."""
    if request.jid.bare == sender.bare:
        return
    if isinstance(request, Subscribe):
        raise _bad("you can only subscribe an address of your own account", "invalid-jid")
    raise Refusal(StanzaErrorCondition.FORBIDDEN, "you can only unsubscribe an address of your own account")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """XEP-0163 §5's defaults, and one item kept (a singleton node, XEP-0060 §12.21)."""

    access_model: AccessModel = "presence"
    max_items: int | Literal["max"] = 1  # "max": as many as the server allows (XEP-0384 bundles)
    persist_items: bool = True
    send_last_published_item: SendLast = "on_sub_and_presence"
    roster_groups_allowed: frozenset[str] = frozenset()
    notify_retract: bool = True

    def item_limit(self, ceiling: int) -> int:
        """How many items to keep, given the server's own ``ceiling``."""
        return ceiling if self.max_items == "max" else min(self.max_items, ceiling)


DEFAULTS = NodeConfig()


def _one(attr: str, values: list[str]) -> str:
    if len(values) != 1:
        raise _unacceptable(f"pubsub#{attr} takes exactly one value")
    return values[0]


def _choice(attr: str, allowed: tuple[str, ...], app: str | None = None) -> Callable[[list[str]], str]:
    def read(values: list[str]) -> str:
        if (value := _one(attr, values)) not in allowed:
            raise _unacceptable(f"pubsub#{attr} is one of {', '.join(allowed)}, not {value[:40]!r}", app)
        return value

    return read


def _flag(attr: str) -> Callable[[list[str]], bool]:
    return lambda values: _boolean(_one(attr, values), f"pubsub#{attr}", StanzaErrorCondition.NOT_ACCEPTABLE)


def _max_items(values: list[str]) -> int | str:
    value = _one("max_items", values)
    if value != "max" and (not _NUMBER.fullmatch(value) or int(value) == 0):
        raise _unacceptable(f"pubsub#max_items is a positive whole number or 'max', not {value[:20]!r}")
    return value if value == "max" else int(value)


_ACCESS_MODELS = ("presence", "open", "whitelist", "roster")  # not "authorize": nobody approves here
_SEND_LAST = ("never", "on_sub", "on_sub_and_presence")
# NodeConfig attribute (its field is "pubsub#" + attribute) -> reader of the field's values. Bad
# data is not-acceptable (XEP-0004 §4), an access model not offered also <unsupported-access-model/>.
_READERS: dict[str, Callable[[list[str]], object]] = {
    "access_model": _choice("access_model", _ACCESS_MODELS, "unsupported-access-model"),
    "max_items": _max_items,
    "persist_items": _flag("persist_items"),
    "send_last_published_item": _choice("send_last_published_item", _SEND_LAST),
    "roster_groups_allowed": frozenset,
    "notify_retract": _flag("notify_retract"),
}
# Fields with one value on every PEP node here: a request may only repeat it.
_FIXED = {
    "pubsub#deliver_notifications": "true",
    "pubsub#deliver_payloads": "true",
    "pubsub#notify_delete": "true",
    "pubsub#purge_offline": "false",
    "pubsub#publish_model": "publishers",
    "pubsub#notification_type": "headline",
}


def _read(options: Fields, ceiling: int | None) -> tuple[dict[str, object], str]:
    """The NodeConfig changes ``options`` ask for, and why no node here can take them ("": it can)."""
    changes: dict[str, object] = {}
    impossible = []
    for var, values in options.items():
        attr = var.removeprefix("pubsub#")
        if var.startswith("pubsub#") and attr in _READERS:
            changes[attr] = value = _READERS[attr](list(values))
            if attr == "max_items" and ceiling is not None and isinstance(value, int) and value > ceiling:
                raise _unacceptable(f"pubsub#max_items is at most {ceiling} here (or 'max')")
        elif var in _FIXED:
            if [{"1": "true", "0": "false"}.get(value, value) for value in values] != [_FIXED[var]]:
                impossible.append(f"{var} is always {_FIXED[var]} on this service")
        else:
            impossible.append(f"{var[:80]} is not a node option this service knows")
    return changes, (impossible[0] if impossible else "")


def check_publish_options(
    config: NodeConfig | None, options: Fields, *, defaults: NodeConfig = DEFAULTS, ceiling: int | None = None
) -> NodeConfig:
    """XEP-0060 §7.1.5: the configuration to publish under. An existing ``config`` must already be as
    each option says, else ``conflict`` + ``<precondition-not-met/>`` (XEP-0384 clients then reconfigure
    it, §8.2); without one the publish creates the node ("auto-create"): ``defaults`` with the options
    applied. Unknown or fixed fields set otherwise: ``precondition-not-met`` either way; ill-formed
    values: ``not-acceptable``; ``ceiling``: the largest number of items the server keeps."""
    changes, impossible = _read(options, ceiling)
    if impossible:
        raise _refusal(StanzaErrorCondition.CONFLICT, impossible, "precondition-not-met")
    if config is None:
        return dataclasses.replace(defaults, **changes)  # type: ignore[arg-type]
    for attr, wanted in changes.items():
        if getattr(config, attr) != wanted:
            text = f"the node's pubsub#{attr} is {_show(getattr(config, attr))}, not {_show(wanted)}"
            raise _refusal(StanzaErrorCondition.CONFLICT, text, "precondition-not-met")
    return config


def apply_configuration(config: NodeConfig, options: Fields, *, ceiling: int | None = None) -> NodeConfig:
    """§8.2.4 (§8.1.3 with the defaults as ``config``): fields left out keep their value (XEP-0004
    §3.5); a field unknown here, a fixed one set otherwise or a bad value is ``not-acceptable``."""
    changes, impossible = _read(options, ceiling)
    if impossible:
        raise _unacceptable(impossible)
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def _show(value: object) -> str:
    if isinstance(value, frozenset):
        return ", ".join(sorted(value)) or "(none)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def configure_form(node: str, config: NodeConfig) -> etree._Element:
    """§8.2.2: the owner ``<pubsub/>`` answering :class:`ConfigureGet`, the current values filled in."""
    pubsub = etree.Element(_Q_OWNER_PUBSUB, nsmap=ns.default(PUBSUB_OWNER))
    configure = etree.SubElement(pubsub, ns.qname(PUBSUB_OWNER, "configure"), node=node)
    x = etree.SubElement(configure, _Q_X, nsmap=ns.default(ns.DATA_FORMS), type="form")
    fields: list[tuple[str, str, Iterable[str], Iterable[str]]] = [
        ("FORM_TYPE", "hidden", [NODE_CONFIG], ()),
        ("pubsub#access_model", "list-single", [config.access_model], _ACCESS_MODELS),
        ("pubsub#max_items", "text-single", [str(config.max_items)], ()),
        ("pubsub#persist_items", "boolean", [_show(config.persist_items)], ()),
        ("pubsub#send_last_published_item", "list-single", [config.send_last_published_item], _SEND_LAST),
        ("pubsub#roster_groups_allowed", "list-multi", sorted(config.roster_groups_allowed), ()),
        ("pubsub#notify_retract", "boolean", [_show(config.notify_retract)], ()),
    ]
    for var, kind, values, options in fields:
        field = etree.SubElement(x, _Q_FIELD, var=var, type=kind)
        for option in options:
            etree.SubElement(
                etree.SubElement(field, ns.qname(ns.DATA_FORMS, "option")), _Q_VALUE
            ).text = option
        for value in values:
            etree.SubElement(field, _Q_VALUE).text = value
    return pubsub


def may_access(config: NodeConfig, relation: Relation, groups: Groups = ()) -> bool:
    """XEP-0060 §4.5, §6.5.1: may an entity retrieve items or subscribe? ``relation``: its tie to the
    owner, "self" (the owner's bare JID), "subscribed" (it has a from/both presence subscription),
    "roster" (a roster item without one) or "none"; ``groups``: its roster groups."""
    if relation == "self" or config.access_model == "open":
        return True
    if config.access_model == "presence":
        return relation == "subscribed"
    if config.access_model == "roster":
        return relation == "subscribed" and not config.roster_groups_allowed.isdisjoint(groups)
    return False  # whitelist: the owner alone (no member affiliations here)


_UNAUTHORIZED, _PSR = StanzaErrorCondition.NOT_AUTHORIZED, "presence-subscription-required"


def access_refusal(config: NodeConfig, relation: Relation, groups: Groups = ()) -> Refusal | None:
    """The error of §6.1.3 and §6.5.9 for an entity :func:`may_access` turns away, else None."""
    if may_access(config, relation, groups):
        return None
    if config.access_model == "whitelist":
        return _refusal(StanzaErrorCondition.NOT_ALLOWED, "only the owner may read this node", "closed-node")
    if config.access_model == "roster" and relation == "subscribed":
        return _refusal(_UNAUTHORIZED, "this node is for roster groups you are not in", "not-in-roster-group")
    return _refusal(_UNAUTHORIZED, "this node is for the owner's presence subscribers", _PSR)


def receives_notification(
    config: NodeConfig, relation: Relation, *, interested: bool, subscribed: bool = False, groups: Groups = ()
) -> bool:
    """XEP-0163 §4: does an entity get the node's notifications? ``interested``: its verified caps
    have "node+notify" (§4.2); ``subscribed``: it subscribed explicitly (§6.1). Implicitly subscribed
    (§4.1, XEP-0060 §9.1.3), with the interest: the owner, presence subscribers, and for an open node
    anyone who sent presence."""
    if not may_access(config, relation, groups):
        return False
    implicit = relation in ("self", "subscribed") or config.access_model == "open"
    return subscribed or (interested and implicit)


def new_item_id() -> str:
    """§7.1.1: an ItemID for an item published without one (128 random bits, hex)."""
    return secrets.token_hex(16)


Payload = etree._Element | bytes  # bytes: one element as xml.serialize wrote it (a stored item)


def _items_xml(node: str, items: Sequence[tuple[str, Payload]], retracts: Sequence[str] = ()) -> bytes:
    parts = [f"<items node='{escape_attr(node)}'>".encode()]
    for item_id, payload in items:
        body = payload if isinstance(payload, bytes) else serialize(payload)
        parts.append(f"<item id='{escape_attr(item_id)}'>".encode() + body + b"</item>")
    parts.extend(f"<retract id='{escape_attr(item_id)}'/>".encode() for item_id in retracts)
    return b"".join(parts) + b"</items>"


def _message(from_bare: str, to: str, event: bytes, stanza_id: str | None, extra: str = "") -> bytes:
    head = (
        f"<message xmlns='{ns.CLIENT}' from='{escape_attr(from_bare)}' to='{escape_attr(to)}' "
        f"type='headline' id='{escape_attr(stanza_id or new_item_id())}'><event xmlns='{PUBSUB_EVENT}'>"
    )
    return head.encode() + event + f"</event>{extra}</message>".encode()


def event_message(
    from_bare: str,
    to: str,
    node: str,
    items: Sequence[tuple[str, Payload]] = (),
    *,
    retracts: Sequence[str] = (),
    stanza_id: str | None = None,
    replyto: str | None = None,
    delay: str | None = None,
) -> bytes:
    """XEP-0163 §4.3, XEP-0060 §7.1.2.1: the notification of ``items`` (id, payload) or of the
    ``retracts`` (§7.2.2.1), from the owner's bare JID. ``replyto``: the publishing full JID, for
    presence subscribers only (XEP-0163 §4.3.1, XEP-0033); ``delay``: the XEP-0203 stamp of a last
    published item sent later (§4.3.4). Payloads are copied as bytes: no tree takes a peer's names."""
    if items and retracts:
        raise ValueError("a notification carries items or retractions, not both")
    extra = ""
    if replyto is not None:
        address = f"<address type='replyto' jid='{escape_attr(replyto)}'/>"
        extra += f"<addresses xmlns='{ADDRESS}'>{address}</addresses>"
    if delay is not None:
        extra += f"<delay xmlns='{ns.DELAY}' stamp='{escape_attr(delay)}'/>"
    return _message(from_bare, to, _items_xml(node, items, retracts), stanza_id, extra)


def delete_message(from_bare: str, to: str, node: str, *, stanza_id: str | None = None) -> bytes:
    """XEP-0060 §8.4.2: tell a subscriber the node is gone."""
    return _message(from_bare, to, f"<delete node='{escape_attr(node)}'/>".encode(), stanza_id)


def items_result(
    node: str, items: Sequence[tuple[str, Payload]], stanza: etree._Element | None = None
) -> etree._Element:
    """§6.5.3: the ``<pubsub/>`` answering :class:`Items` (none found: empty ``<items/>``, §6.5.9.12),
    or with the request ``stanza`` the whole iq result, parsed with names of its own (xml_names.py)."""
    data = f"<pubsub xmlns='{PUBSUB}'>".encode() + _items_xml(node, items) + b"</pubsub>"
    if stanza is None:
        return parse_element(data)
    swap = (("id", "id"), ("from", "to"), ("to", "from"))  # iq_reply's addressing
    attrs = "".join(
        f" {ours}='{escape_attr(stanza.get(theirs, ''))}'" for ours, theirs in swap if stanza.get(theirs)
    )
    return parse_element(f"<iq xmlns='{ns.CLIENT}' type='result'{attrs}>".encode() + data + b"</iq>")


def publish_result(node: str, item_id: str) -> etree._Element:
    """§7.1.2: the ``<pubsub/>`` of a publish's result, naming the item (SHOULD when made here)."""
    pubsub = etree.Element(_Q_PUBSUB, nsmap=ns.default(PUBSUB))
    etree.SubElement(etree.SubElement(pubsub, ns.qname(PUBSUB, "publish"), node=node), _Q_ITEM, id=item_id)
    return pubsub


def subscription_result(node: str, jid: JID, subscribed: bool = True) -> etree._Element:
    """§6.1.2, §6.2.2: the ``<pubsub/>`` with the ``<subscription/>`` of the (un)subscribed JID."""
    pubsub = etree.Element(_Q_PUBSUB, nsmap=ns.default(PUBSUB))
    state = "subscribed" if subscribed else "none"
    etree.SubElement(pubsub, ns.qname(PUBSUB, "subscription"), node=node, jid=str(jid), subscription=state)
    return pubsub


class Caps(NamedTuple):
    """XEP-0115 §4: a ``<c/>``'s hash algorithm, software node and verification string."""

    hash: str
    node: str
    ver: str  # §6.2: the disco#info request asks the node f"{node}#{ver}"


_HASHES = {f"sha-{bits}": f"sha{bits}" for bits in (1, 224, 256, 384, 512)}  # IANA names, §8.1


def notify_nodes(disco_features: Iterable[str]) -> frozenset[str]:
    """XEP-0060 §9.2: the nodes a client wants notifications of, from its "NodeID+notify" features."""
    return frozenset(
        f.removesuffix("+notify") for f in disco_features if f.endswith("+notify") and f != "+notify"
    )


def caps_from_presence(presence: etree._Element) -> Caps | None:
    """XEP-0115 §4: the presence's ``<c/>``; None without one or without 'hash' (legacy, §5.4 step 1)."""
    c = presence.find(ns.qname(CAPS, "c"))
    if c is None:
        return None
    hash_alg, node, ver = c.get("hash"), c.get("node"), c.get("ver")
    return Caps(hash_alg, node, ver) if hash_alg and node and ver else None


def caps_ver(hash_alg: str, disco_info_query: etree._Element) -> str | None:
    """XEP-0115 §5.1: the verification string of a disco#info ``<query/>``; None if the hash is not
    one of the IANA names known here or the response is ill-formed (§5.4 step 3)."""
    algorithm = _HASHES.get(hash_alg)
    identities = [
        (i.get("category", ""), i.get("type", ""), i.get(ns.qname(ns.XML, "lang"), ""), i.get("name", ""))
        for i in disco_info_query.iterchildren(ns.qname(ns.DISCO_INFO, "identity"))
    ]
    features = [f.get("var", "") for f in disco_info_query.iterchildren(ns.qname(ns.DISCO_INFO, "feature"))]
    if algorithm is None or len(set(identities)) != len(identities) or len(set(features)) != len(features):
        return None  # §5.4 steps 3.3 and 3.4
    if any("<" in part for part in (*features, *(p for i in identities for p in i))):
        return None  # "<" is §5.1's separator: inside a value, two answers could hash alike (a forgery)
    forms: dict[str, list[tuple[str, list[str]]]] = {}
    for x in disco_info_query.iterchildren(_Q_X):
        fields = [
            (f.get("var", ""), f.get("type"), [v.text or "" for v in f.iterchildren(_Q_VALUE)])
            for f in x.iterchildren(_Q_FIELD)
        ]
        form_type = [(kind, set(values)) for var, kind, values in fields if var == "FORM_TYPE"]
        if not form_type or form_type[0][0] != "hidden":
            continue  # §5.4 step 3.6: such a form is ignored
        if len(form_type) > 1 or len(form_type[0][1]) != 1 or min(form_type[0][1]) in forms:
            return None  # §5.4 step 3.5
        form = sorted((var, sorted(vals)) for var, _, vals in fields if var != "FORM_TYPE")
        if any("<" in text for var, vals in form for text in (var, *vals)) or "<" in min(form_type[0][1]):
            return None  # as for features: the separator inside a value is ambiguous
        forms[min(form_type[0][1])] = form
    text = "".join("/".join(identity) + "<" for identity in sorted(identities))
    text += "".join(f"{feature}<" for feature in sorted(features))
    for form_type_value, form_fields in sorted(forms.items()):
        text += f"{form_type_value}<" + "".join(
            var + "<" + "".join(f"{v}<" for v in vals) for var, vals in form_fields
        )
    return base64.b64encode(hashlib.new(algorithm, text.encode()).digest()).decode()


def verify_caps(ver: str, hash_alg: str, disco_info_query: etree._Element) -> bool:
    """XEP-0115 §5.4 step 3: whether ``disco_info_query`` is what ``ver`` was made from (only then
    may it be cached for every JID advertising ``ver``)."""
    return caps_ver(hash_alg, disco_info_query) == ver
