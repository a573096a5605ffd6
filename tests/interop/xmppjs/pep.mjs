// Personal Eventing (XEP-0163) actions for client.mjs, as an OMEMO client built on xmpp.js does it, for
// tests/integration/test_interop_xmppjs_pep.py. xmpp.js 0.14 has neither entity capabilities nor a
// pubsub API, so the stanzas are written here. An action module as im.mjs describes (`arity`, `setup`).
//
// From setup on, a disco#info query (XEP-0030) is answered with our identity and features: always
// without a node; for CAPS_NODE#ver once `caps-presence` has sent that ver; otherwise item-not-found.
// Pings (XEP-0199) xmpp.js answers itself.
//
// Actions:
//   feature VAR              list VAR in our disco#info (before `caps-presence`)
//   notify NODE              list NODE+notify: we want NODE's notifications (XEP-0163 §4.2)
//   caps-presence            available presence with XEP-0115 caps: <c hash='sha-1' node=CAPS_NODE ver=…/>,
//                            ver the §5.1 hash of our disco#info (emits "caps")
//   asked                    wait until the server has asked our disco#info for CAPS_NODE#ver and we answered
//   publish-devices ID       publish the OMEMO device list <list><device id=ID/></list> to our own PEP node
//                            eu.siacs.conversations.axolotl.devicelist, item 'current', with the
//                            publish-options pubsub#access_model=open (XEP-0060 §7.1.5)
//   expect-devices JID ID    wait for a notification of JID's device list that holds device ID
// (with im.mjs's `ping`: once answered, all sent before has been handled; client.mjs's `stop`)
//
// Events (one JSON object per line, as client.mjs prints them):
//   {"event":"caps","hash","node","ver","identity","features"}          the caps of our presence
//   {"event":"disco","from","to","node","answered":bool}                a disco#info query we got
//   {"event":"published","node","id"}                                   the publish's result
//   {"event":"pep","from","to","type","node","items":[{"id","devices"}],"delay"}   a PEP notification
//                            (devices: the device ids of a device list; delay: a XEP-0203 stamp or null)

import crypto from "node:crypto";

const NS_DISCO = "http://jabber.org/protocol/disco#info";
const NS_CAPS = "http://jabber.org/protocol/caps";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_EVENT = "http://jabber.org/protocol/pubsub#event";
const NS_DATA = "jabber:x:data";
const NS_DELAY = "urn:xmpp:delay";
const NS_PING = "urn:xmpp:ping";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const NS_OMEMO = "eu.siacs.conversations.axolotl";
const DEVICES = `${NS_OMEMO}.devicelist`;
const CAPS_NODE = "https://xmppauth.test/xmppjs-pep";
// category, type, xml:lang, name; the name is that of tests/integration/test_pep.py's ver(), which the
// tests use to check the hash computed here
const IDENTITY = ["client", "pc", "", "PEP test"];

export const arity = {
  feature: 1,
  notify: 1,
  "caps-presence": 0,
  asked: 0,
  "publish-devices": 1,
  "expect-devices": 2,
};

// XEP-0115 §5.1 (no extended forms): identities then features, each sorted and followed by '<'
function verOf(features) {
  const text = `${IDENTITY.join("/")}<${[...features].sort().map((f) => `${f}<`).join("")}`;
  return crypto.createHash("sha1").update(text, "utf8").digest("base64");
}

export function setup({ xmpp, xml, emit, until, changed }) {
  // ------------------------------------------------------------------ disco#info, for XEP-0115
  const features = new Set([NS_DISCO, NS_CAPS, NS_PING]);
  let ver = null; // set by `caps-presence`
  const asked = [];
  xmpp.iqCallee.get(NS_DISCO, "query", ({ stanza, element }) => {
    const node = element.attrs.node ?? null;
    const answered = node === null || (ver !== null && node === `${CAPS_NODE}#${ver}`);
    const { from = null, to = null } = stanza.attrs;
    const query = { event: "disco", from, to, node, answered };
    asked.push(query);
    emit(query);
    changed();
    if (!answered) return xml("error", { type: "cancel" }, xml("item-not-found", NS_STANZAS));
    const [category, type, , name] = IDENTITY;
    return xml(
      "query",
      { xmlns: NS_DISCO, ...(node && { node }) },
      xml("identity", { category, type, name }),
      ...[...features].map((v) => xml("feature", { var: v })),
    );
  });

  // ------------------------------------------------------------------ notifications
  // (a message error is client.mjs's: it ends the run unless an action expects it)
  const notifications = [];
  xmpp.on("stanza", (el) => {
    if (!el.is("message") || el.attrs.type === "error") return;
    const items = el.getChild("event", NS_EVENT)?.getChild("items");
    if (!items) return;
    const event = {
      event: "pep",
      from: el.attrs.from ?? null,
      to: el.attrs.to ?? null,
      type: el.attrs.type ?? "normal",
      node: items.attrs.node ?? null,
      items: items.getChildren("item").map((item) => ({
        id: item.attrs.id ?? null,
        devices: (item.getChild("list", NS_OMEMO)?.getChildren("device") ?? []).map((d) => d.attrs.id),
      })),
      delay: el.getChild("delay", NS_DELAY)?.attrs.stamp ?? null,
    };
    emit(event);
    notifications.push(event);
    changed();
  });

  return {
    async feature(v) {
      features.add(v);
    },

    async notify(node) {
      features.add(`${node}+notify`);
    },

    async "caps-presence"() {
      ver = verOf(features);
      const listed = [...features].sort();
      emit({ event: "caps", hash: "sha-1", node: CAPS_NODE, ver, identity: IDENTITY, features: listed });
      await xmpp.send(xml("presence", {}, xml("c", { xmlns: NS_CAPS, hash: "sha-1", node: CAPS_NODE, ver })));
    },

    async asked() {
      await until(() => asked.some((q) => q.answered && q.node !== null));
    },

    async "publish-devices"(id) {
      const field = (v, value, type) =>
        xml("field", { var: v, ...(type && { type }) }, xml("value", {}, value));
      const list = xml("list", { xmlns: NS_OMEMO }, xml("device", { id }));
      const publish = xml(
        "pubsub",
        { xmlns: NS_PUBSUB },
        xml("publish", { node: DEVICES }, xml("item", { id: "current" }, list)),
        xml(
          "publish-options",
          {},
          xml(
            "x",
            { xmlns: NS_DATA, type: "submit" },
            field("FORM_TYPE", `${NS_PUBSUB}#publish-options`, "hidden"),
            field("pubsub#access_model", "open"),
          ),
        ),
      );
      await xmpp.iqCaller.set(publish); // to our own bare JID: no 'to' (XEP-0163 §3)
      emit({ event: "published", node: DEVICES, id: "current" });
    },

    async "expect-devices"(jid, id) {
      const holds = (n) =>
        n.from === jid && n.node === DEVICES && n.items.some((i) => i.devices.includes(id));
      await until(() => notifications.some(holds));
    },
  };
}
