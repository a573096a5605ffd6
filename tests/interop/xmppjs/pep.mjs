#!/usr/bin/env node
// Personal Eventing (XEP-0163) as an OMEMO client built on xmpp.js does it, for
// tests/integration/test_interop_xmppjs_pep.py. A client of its own: client.mjs loads its action modules
// from a fixed list, and xmpp.js 0.14 has neither entity capabilities nor a pubsub API, so the stanzas
// are written here.
//
//   node --experimental-websocket pep.mjs --service URL --username NAME --password SECRET
//        [--domain NAME] [--resource RES] [--timeout MS] ACTION...
// (the options of client.mjs that these tests use; test_xmppjs.Client passes them)
//
// Actions, run in order after logging in:
//   feature VAR              list VAR in our disco#info (before `presence`)
//   notify NODE              list NODE+notify: we want NODE's notifications (XEP-0163 §4.2)
//   presence                 available presence with XEP-0115 caps: <c hash='sha-1' node=CAPS_NODE ver=…/>,
//                            ver the §5.1 hash of our disco#info (emits "caps")
//   asked                    wait until the server has asked our disco#info for CAPS_NODE#ver and we answered
//   ping                     XEP-0199 ping of the server: once answered, all sent before has been handled
//   publish-devices ID       publish the OMEMO device list <list><device id=ID/></list> to our own PEP node
//                            eu.siacs.conversations.axolotl.devicelist, item 'current', with the
//                            publish-options pubsub#access_model=open (XEP-0060 §7.1.5)
//   expect-devices JID ID    wait for a notification of JID's device list that holds device ID
//   stop                     close the stream (also done at the end)
//
// Events, one JSON object per line:
//   {"event":"online","jid"}
//   {"event":"caps","hash","node","ver","identity","features"}          the caps of our presence
//   {"event":"disco","from","to","node","answered":bool}                a disco#info query we got
//   {"event":"published","node","id"}                                   the publish's result
//   {"event":"pep","from","to","type","node","items":[{"id","devices"}],"delay"}   a PEP notification
//                            (devices: the device ids of a device list; delay: a XEP-0203 stamp or null)
//   {"event":"pong"}, {"event":"offline"}
//   {"event":"error","stage","name","condition","message"}   then a non-zero exit (1 login, 2 usage,
//                            3 timeout, 4 later)

import { client, xml } from "@xmpp/client";
import crypto from "node:crypto";
import process from "node:process";

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
const ARITY = {
  feature: 1,
  notify: 1,
  presence: 0,
  asked: 0,
  ping: 0,
  "publish-devices": 1,
  "expect-devices": 2,
  stop: 0,
};

const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
let finished = false;
function finish(code) {
  if (finished) return;
  finished = true;
  process.stdout.write("", () => process.exit(code));
}
function fail(code, stage, err) {
  if (finished) return;
  const condition = err?.condition ?? null;
  const message = String(err?.message ?? err);
  emit({ event: "error", stage, name: err?.name ?? "Error", condition, message });
  finish(code);
}

function parseArgs(argv) {
  const opts = { domain: "localhost", timeout: "20000" };
  const actions = [];
  for (let i = 0; i < argv.length; ) {
    const word = argv[i++];
    if (word.startsWith("--")) {
      if (i >= argv.length) throw new Error(`${word} needs a value`);
      opts[word.slice(2)] = argv[i++];
    } else if (Object.hasOwn(ARITY, word)) {
      if (i + ARITY[word] > argv.length) throw new Error(`action ${word} needs ${ARITY[word]} argument(s)`);
      actions.push([word, ...argv.slice(i, i + ARITY[word])]);
      i += ARITY[word];
    } else {
      throw new Error(`unknown action ${JSON.stringify(word)}`);
    }
  }
  for (const name of ["service", "username", "password"]) {
    if (!opts[name]) throw new Error(`--${name} is required`);
  }
  return { opts, actions };
}

// XEP-0115 §5.1 (no extended forms): identities then features, each sorted and followed by '<'
function verOf(features) {
  const text = `${IDENTITY.join("/")}<${[...features].sort().map((f) => `${f}<`).join("")}`;
  return crypto.createHash("sha1").update(text, "utf8").digest("base64");
}

let parsed;
try {
  parsed = parseArgs(process.argv.slice(2));
} catch (err) {
  fail(2, "usage", err);
}
if (parsed) await main(parsed);

async function main({ opts, actions }) {
  let stage = "login";
  const timer = setTimeout(
    () => fail(3, stage, new Error(`timed out after ${opts.timeout} ms`)),
    Number(opts.timeout),
  );
  const xmpp = client({
    service: opts.service,
    domain: opts.domain,
    username: opts.username,
    password: opts.password,
    resource: opts.resource,
  });
  xmpp.reconnect.stop(); // one attempt: a failure ends the run
  // the race in @xmpp/connection 0.14's open() that client.mjs works around (see there)
  const open = xmpp.open.bind(xmpp);
  xmpp.open = (options) => {
    const opened = new Promise((resolve) => xmpp.once("open", resolve));
    return Promise.race([open(options), opened]);
  };

  // actions wait on conditions; whatever may change one calls changed()
  const waiters = new Set();
  const changed = () => [...waiters].forEach((w) => w());
  const until = async (condition) => {
    while (!condition()) {
      await new Promise((resolve) => {
        const w = () => {
          waiters.delete(w);
          resolve();
        };
        waiters.add(w);
      });
    }
  };

  // ------------------------------------------------------------------ disco#info, for XEP-0115
  const features = new Set([NS_DISCO, NS_CAPS, NS_PING]);
  let ver = null; // set by `presence`
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
  xmpp.iqCallee.get(NS_PING, "ping", () => true);

  // ------------------------------------------------------------------ notifications
  const notifications = [];
  xmpp.on("stanza", (el) => {
    if (!el.is("message")) return;
    if (el.attrs.type === "error") {
      fail(4, stage, new Error(`message error from ${el.attrs.from}: ${el.toString()}`));
      return;
    }
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

  xmpp.on("error", (err) => fail(stage === "login" ? 1 : 4, stage, err));
  let stopping = false;
  xmpp.on("disconnect", ({ clean } = {}) => {
    if (stopping) return;
    fail(stage === "login" ? 1 : 4, stage, new Error(`the connection was lost (clean: ${clean})`));
  });
  xmpp.on("online", (jid) => emit({ event: "online", jid: jid.toString() }));
  try {
    await xmpp.start();
  } catch (err) {
    fail(1, "login", err);
    return;
  }

  const runners = {
    async feature(v) {
      features.add(v);
    },
    async notify(node) {
      features.add(`${node}+notify`);
    },
    async presence() {
      ver = verOf(features);
      const listed = [...features].sort();
      emit({ event: "caps", hash: "sha-1", node: CAPS_NODE, ver, identity: IDENTITY, features: listed });
      await xmpp.send(xml("presence", {}, xml("c", { xmlns: NS_CAPS, hash: "sha-1", node: CAPS_NODE, ver })));
    },
    async asked() {
      await until(() => asked.some((q) => q.answered && q.node !== null));
    },
    async ping() {
      await xmpp.iqCaller.get(xml("ping", { xmlns: NS_PING }), xmpp.jid.domain);
      emit({ event: "pong" });
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

  try {
    for (const [name, ...args] of actions) {
      if (finished) return;
      stage = name;
      if (name === "stop") break;
      await runners[name](...args);
    }
    stage = "stop";
    stopping = true;
    await xmpp.stop();
    emit({ event: "offline" });
  } catch (err) {
    fail(4, stage, err);
    return;
  }
  clearTimeout(timer);
  finish(0);
}
