#!/usr/bin/env node
// A small xmpp.js (@xmpp/client) command-line client for xmppauth's interop tests.
//
//   node --experimental-websocket client.mjs [options] ACTION...
//
// Options (each also read from the environment variable in brackets):
//   --service URL        xmpp://host:port (STARTTLS), xmpps://host:port (direct TLS),
//                        ws://host:port/xmpp-websocket                      [XMPP_SERVICE]
//   --domain NAME        the XMPP domain (default: localhost)               [XMPP_DOMAIN]
//   --username NAME      local part of the account                          [XMPP_USERNAME]
//   --password SECRET                                                       [XMPP_PASSWORD]
//   --resource RES       RFC 6120 resource to request; with Bind2 it is the <tag/> [XMPP_RESOURCE]
//   --user-agent-id ID   XEP-0388 <user-agent id=.../> (default: a random UUID) [XMPP_USER_AGENT_ID]
//   --timeout MS         hard limit for the whole run (default: 20000)      [XMPP_TIMEOUT]
//   --trace              also print every chunk read and written, verbatim  [XMPP_TRACE=1]
//   --no-sasl2           hide the server's XEP-0388 <authentication/> feature from xmpp.js, so that
//                        it uses RFC 6120 SASL + resource binding                [XMPP_NO_SASL2=1]
//
// Actions, run in order after logging in:
//   presence             send initial presence
//   send JID BODY        send a chat message
//   wait N               wait until N chat messages (in total) have been received
//   reply BODY           answer the sender of the last message received
//   sleep MS             pause
//   stop                 close the stream (also done implicitly at the end)
//
// Output: one JSON object per line on stdout:
//   {"event":"nonza","name":...,"xmlns":...,"children":[...],"online":false}  every top-level non-stanza received
//                        (children as received; "hidden" lists what --no-sasl2 took away)
//   {"event":"online","jid":...,"sasl":"sasl2"|"sasl1"|null,"bind":"bind2"|"rfc6120"|null}
//   {"event":"message","from":...,"to":...,"type":...,"body":...}
//   {"event":"sent","to":...,"body":...}
//   {"event":"offline"}
//   {"event":"error","stage":...,"name":...,"condition":...,"message":...}   (then a non-zero exit)
// Exit codes: 0 success, 1 login failed, 2 bad usage, 3 timeout, 4 failure after login.
//
// TLS: our test server uses a self-signed certificate; run with NODE_TLS_REJECT_UNAUTHORIZED=0.

import { client, xml } from "@xmpp/client";
import process from "node:process";

const NS_SASL1 = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_SASL2 = "urn:xmpp:sasl:2";
const NS_BIND1 = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_BIND2 = "urn:xmpp:bind:0";

const t0 = performance.now();
const since = () => Math.round(performance.now() - t0);

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

let finished = false;
function finish(code) {
  if (finished) return;
  finished = true;
  // stdout may be a pipe: let it drain before exiting.
  process.stdout.write("", () => process.exit(code));
}

function fail(code, stage, err) {
  if (finished) return;
  emit({
    event: "error",
    stage,
    name: err?.name ?? "Error",
    condition: err?.condition ?? null,
    text: err?.text || null,
    message: String(err?.message ?? err),
  });
  finish(code);
}

// ------------------------------------------------------------------------------ arguments
const OPTIONS = {
  service: "XMPP_SERVICE",
  domain: "XMPP_DOMAIN",
  username: "XMPP_USERNAME",
  password: "XMPP_PASSWORD",
  resource: "XMPP_RESOURCE",
  "user-agent-id": "XMPP_USER_AGENT_ID",
  timeout: "XMPP_TIMEOUT",
};

function parseArgs(argv) {
  const opts = {};
  for (const [name, env] of Object.entries(OPTIONS)) {
    if (process.env[env] !== undefined) opts[name] = process.env[env];
  }
  opts.trace = process.env.XMPP_TRACE === "1";
  opts.noSasl2 = process.env.XMPP_NO_SASL2 === "1";
  const actions = [];
  const words = [...argv];
  while (words.length > 0) {
    const word = words.shift();
    if (word === "--trace") {
      opts.trace = true;
    } else if (word === "--no-sasl2") {
      opts.noSasl2 = true;
    } else if (word.startsWith("--")) {
      const name = word.slice(2);
      if (!(name in OPTIONS) || words.length === 0) throw new Error(`bad option ${word}`);
      opts[name] = words.shift();
    } else {
      const arity = { presence: 0, stop: 0, send: 2, wait: 1, reply: 1, sleep: 1 }[word];
      if (arity === undefined) throw new Error(`unknown action ${JSON.stringify(word)}`);
      if (words.length < arity) throw new Error(`action ${word} needs ${arity} argument(s)`);
      actions.push([word, ...words.splice(0, arity)]);
    }
  }
  for (const name of ["service", "username", "password"]) {
    if (!opts[name]) throw new Error(`--${name} is required`);
  }
  opts.domain ??= "localhost";
  opts.timeout = Number(opts.timeout ?? 20000);
  return { opts, actions };
}

let parsed;
try {
  parsed = parseArgs(process.argv.slice(2));
} catch (err) {
  fail(2, "usage", err);
}

if (parsed) {
  await main(parsed);
}

// ------------------------------------------------------------------------------ the run
async function main({ opts, actions }) {
  let stage = "login";
  const timer = setTimeout(
    () => fail(3, stage, new Error(`timed out after ${opts.timeout} ms (stage: ${stage})`)),
    opts.timeout,
  );

  const xmpp = client({
    service: opts.service,
    domain: opts.domain,
    username: opts.username,
    password: opts.password,
    resource: opts.resource || undefined,
    userAgent: xml(
      "user-agent",
      { id: opts["user-agent-id"] || globalThis.crypto.randomUUID() },
      xml("software", {}, "xmppauth-interop (xmpp.js)"),
      xml("device", {}, "test runner"),
    ),
  });
  // One attempt only: a failed login must end the run, not loop.
  xmpp.reconnect.stop();

  // Work around a race in @xmpp/connection 0.14: open() writes the stream header, waits for the write
  // callback, and only then listens for "open" (with a 2 s timeout). Over TLS the server's answering
  // header can be parsed before that callback runs; "open" is then missed and start() rejects with a
  // TimeoutError 2 s later even though the login went on. Listening before the write closes the gap.
  const open = xmpp.open.bind(xmpp);
  xmpp.open = (options) => {
    const opened = new Promise((resolve) => xmpp.once("open", resolve));
    return Promise.race([open(options), opened]);
  };

  if (opts.trace) {
    const onData = xmpp._onData.bind(xmpp);
    xmpp._onData = (data) => {
      emit({ event: "in", ms: since(), data: data.toString("utf8") });
      return onData(data);
    };
    const write = xmpp.write.bind(xmpp);
    xmpp.write = (string) => {
      emit({ event: "out", ms: since(), data: string });
      return write(string);
    };
  }

  // Stream features are dispatched to xmpp.js's handlers from the connection's "element" event;
  // the parser listener binds _onElement when the stream is first opened, so this wrapper is used.
  const hidden = new WeakMap();
  const onElement = xmpp._onElement.bind(xmpp);
  xmpp._onElement = (el) => {
    if (opts.noSasl2 && el.is("features", "http://etherx.jabber.org/streams")) {
      const drop = el.getChildren("authentication", NS_SASL2);
      if (drop.length > 0) {
        el.children = el.children.filter((c) => !drop.includes(c));
        hidden.set(el, drop);
      }
    }
    return onElement(el);
  };

  let sasl = null;
  let bind = null;
  xmpp.on("nonza", (el) => {
    const xmlns = el.getNS();
    const name = (c) => `{${c.getNS()}}${c.name}`;
    if (el.name === "success" && xmlns === NS_SASL2) {
      sasl = "sasl2";
      if (el.getChild("bound", NS_BIND2)) bind = "bind2";
    } else if (el.name === "success" && xmlns === NS_SASL1) {
      sasl = "sasl1";
    }
    const gone = hidden.get(el) ?? [];
    emit({
      event: "nonza",
      name: el.name,
      xmlns,
      children: [...el.getChildElements(), ...gone].map(name),
      ...(gone.length > 0 && { hidden: gone.map(name) }),
      online: xmpp.status === "online",
    });
  });
  xmpp.on("stanza", (el) => {
    // The RFC 6120 bind result is the only IQ we expect before going online.
    if (el.is("iq") && el.attrs.type === "result" && el.getChild("bind", NS_BIND1)) bind = "rfc6120";
  });

  const inbox = [];
  const waiters = [];
  xmpp.on("stanza", (el) => {
    if (!el.is("message")) return;
    const type = el.attrs.type ?? "normal";
    if (type === "error") {
      const err = el.getChild("error");
      const condition = err?.getChildElements()[0]?.name ?? null;
      fail(4, stage, Object.assign(new Error(`message error from ${el.attrs.from}`), { condition }));
      return;
    }
    const body = el.getChildText("body");
    if (body === null) return;
    const msg = { event: "message", from: el.attrs.from ?? null, to: el.attrs.to ?? null, type, body };
    emit(msg);
    inbox.push(msg);
    for (const w of [...waiters]) w();
  });

  let stopping = false;
  xmpp.on("error", (err) => {
    if (stopping) {
      emit({ event: "warning", stage, message: String(err?.message ?? err) });
      return;
    }
    fail(stage === "login" ? 1 : 4, stage, err);
  });
  xmpp.on("disconnect", ({ clean } = {}) => {
    if (stopping) return;
    fail(stage === "login" ? 1 : 4, stage, new Error(`the connection was closed (clean: ${clean})`));
  });
  xmpp.on("online", (jid) => {
    emit({ event: "online", jid: jid.toString(), sasl, bind });
  });

  try {
    await xmpp.start();
  } catch (err) {
    fail(1, "login", err);
    return;
  }

  stage = "actions";
  try {
    for (const [name, ...args] of actions) {
      if (finished) return;
      stage = name;
      if (name === "presence") {
        await xmpp.send(xml("presence"));
      } else if (name === "send") {
        const [to, body] = args;
        await xmpp.send(xml("message", { to, type: "chat" }, xml("body", {}, body)));
        emit({ event: "sent", to, body });
      } else if (name === "reply") {
        const last = inbox.at(-1);
        if (!last) throw new Error("nothing to reply to");
        await xmpp.send(xml("message", { to: last.from, type: "chat" }, xml("body", {}, args[0])));
        emit({ event: "sent", to: last.from, body: args[0] });
      } else if (name === "wait") {
        const n = Number(args[0]);
        while (inbox.length < n) {
          await new Promise((resolve) => {
            const w = () => {
              waiters.splice(waiters.indexOf(w), 1);
              resolve();
            };
            waiters.push(w);
          });
        }
      } else if (name === "sleep") {
        await new Promise((resolve) => setTimeout(resolve, Number(args[0])));
      } else if (name === "stop") {
        break;
      }
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
