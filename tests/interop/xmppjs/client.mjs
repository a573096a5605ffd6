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
//   --reconnect MS       after logging in, let @xmpp/reconnect reconnect MS ms after the transport is
//                        lost (xmpp.js then resumes the XEP-0198 session inline in SASL2 when it can);
//                        without it a lost connection ends the run                [XMPP_RECONNECT]
//   --token-file PATH    keep the XEP-0484 FAST token in PATH (JSON): read before logging in, written
//                        when the server hands out one, removed when xmpp.js drops it [XMPP_TOKEN_FILE]
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
//   hold                 wait for a line on stdin (a go-ahead from the test driving this client)
//   deaf                 from now on ignore everything the server sends, as if it were lost in transit:
//                        xmpp.js never sees it, so it neither handles nor acknowledges it (until `drop`)
//   drop                 destroy the transport under xmpp.js without a word: no </stream:stream>, no TLS
//                        close_notify, no WebSocket close frame; waits until xmpp.js notices the loss
//   resumed              wait until xmpp.js has reconnected and resumed the session (needs --reconnect);
//                        fails if it logged in afresh instead
//   stop                 close the stream (also done implicitly at the end)
// and the actions of the modules in EXTENSIONS, each described in its header:
//   im.mjs               roster and presence subscriptions, the message archive (XEP-0313 + XEP-0059),
//                        blocking (XEP-0191), ping
//   pep.mjs              Personal Eventing (XEP-0163) with entity capabilities (XEP-0115): disco#info
//                        features, presence with caps, publishing and hearing an OMEMO device list
//
// Output: one JSON object per line on stdout:
//   {"event":"nonza","name":...,"xmlns":...,"children":[...],"online":false}  every top-level non-stanza received
//                        (children as received; "hidden" lists what --no-sasl2 took away; except in stream
//                        features, "nested" the deeper descendants as paths, e.g.
//                        "{urn:xmpp:bind:0}bound/{urn:xmpp:sm:3}enabled", and "sm" the name and attributes of
//                        the nonza itself or of its first descendant in the XEP-0198 namespace, e.g.
//                        {"name":"enabled","id":...,"resume":"true","max":...} or {"name":"r"})
//   {"event":"authenticate","mechanism":...,"fast":bool,"requestToken":mechanism|null}  each SASL2 attempt
//   {"event":"token","mechanism":...,"expiry":...}, {"event":"token-deleted"}   FAST token kept / dropped
//   {"event":"online","jid":...,"sasl":"sasl2"|"sasl1"|null,"bind":"bind2"|"rfc6120"|null}
//   {"event":"sm","enabled":...,"id":...,"max":...}   xmpp.js's XEP-0198 state once logged in
//   {"event":"message","from":...,"to":...,"type":...,"body":...}   (with "delay":{"stamp":...,"from":...}
//                        when it carries a XEP-0203 <delay/>)
//   {"event":"sent","to":...,"body":...}
//   {"event":"deaf"}, {"event":"dropped","transport":...,"inbound":h,"ignored":bytes}
//   {"event":"disconnect","clean":...}   the transport was lost (with --reconnect or on `drop`; otherwise
//                        that ends the run with an error)
//   {"event":"reconnecting","at":epoch ms}, {"event":"reconnected","at":epoch ms}   (@xmpp/reconnect)
//   {"event":"resumed","jid":...,"id":...,"inbound":...,"outbound":...,"at":epoch ms}
//                        the session was resumed (@xmpp/stream-management; inbound/outbound: its counters)
//   {"event":"sm-ack"|"sm-fail","stanza":...,"to":...,"body":...}   an outbound stanza acknowledged by the
//                        server / given up as lost (stream management)
//   {"event":"warning","stage":...,"message":...}   an error that does not end the run
//   {"event":"offline"}
//   {"event":"error","stage":...,"name":...,"condition":...,"message":...}   (then a non-zero exit)
//   and the events of the EXTENSIONS' actions (im.mjs: presence, roster, mam-page, blocklist, refused, …;
//                        pep.mjs: caps, disco, published, pep)
// A message error ends the run (exit 4) unless an action expects it (im.mjs `send-refused`).
// Exit codes: 0 success, 1 login failed, 2 bad usage, 3 timeout, 4 failure after login.
//
// TLS: our test server uses a self-signed certificate; run with NODE_TLS_REJECT_UNAUTHORIZED=0.

import { client, xml } from "@xmpp/client";
import net from "node:net";
import process from "node:process";
import readline from "node:readline";

import * as im from "./im.mjs";
import * as pep from "./pep.mjs";

// Action modules: each exports `arity` ({ action: number of arguments }) and `setup(ctx)`, which
// registers its handlers on the client before it connects and returns the action runners (see im.mjs).
// A new family of actions is a new module here.
const EXTENSIONS = [im, pep];

const NS_SASL1 = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_SASL2 = "urn:xmpp:sasl:2";
const NS_BIND1 = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_BIND2 = "urn:xmpp:bind:0";
const NS_SM = "urn:xmpp:sm:3";
const NS_STREAMS = "http://etherx.jabber.org/streams";
const NS_FAST = "urn:xmpp:fast:0";
const NS_DELAY = "urn:xmpp:delay";

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
  reconnect: "XMPP_RECONNECT",
  "token-file": "XMPP_TOKEN_FILE",
};

const CORE_ARITY = {
  presence: 0,
  stop: 0,
  send: 2,
  wait: 1,
  reply: 1,
  sleep: 1,
  hold: 0,
  deaf: 0,
  drop: 0,
  resumed: 0,
};
const ARITY = { ...CORE_ARITY };
for (const extension of EXTENSIONS) {
  for (const [name, arity] of Object.entries(extension.arity)) {
    if (Object.hasOwn(ARITY, name)) throw new Error(`action ${name} is defined twice`);
    ARITY[name] = arity;
  }
}

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
      const arity = Object.hasOwn(ARITY, word) ? ARITY[word] : undefined;
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
  if (opts.reconnect !== undefined) {
    opts.reconnect = Number(opts.reconnect);
    if (!Number.isFinite(opts.reconnect) || opts.reconnect < 0) throw new Error("bad --reconnect delay");
  }
  if (actions.some(([name]) => name === "resumed") && opts.reconnect === undefined) {
    throw new Error("the resumed action needs --reconnect");
  }
  return { opts, actions };
}

// ------------------------------------------------------------------------------ helpers
// The Node stream under xmpp.js's transport, for `drop`: Connection.socket is
//   direct TLS / after STARTTLS  @xmpp/tls Socket wrapper -> .socket, a tls.TLSSocket (after STARTTLS it
//                                wraps the original net.Socket's handle: destroying it closes the TCP too)
//   plain TCP                    @xmpp/connection-tcp Socket, a net.Socket itself
//   WebSocket                    @xmpp/websocket Socket wrapper -> .socket, Node's global (undici)
//                                WebSocket, which keeps the HTTP response, and so the net.Socket it
//                                upgraded, under a symbol described as "response" (undici internals)
// destroy() on it ends the connection at once: unlike end() it sends no TLS close_notify, and no
// WebSocket close frame is sent since the WebSocket object is bypassed.
function transportSocket(xmpp) {
  const outer = xmpp.socket;
  if (outer instanceof net.Socket) return [outer, "tcp"];
  const inner = outer?.socket;
  if (inner instanceof net.Socket) return [inner, inner.encrypted ? "tls" : "tcp"];
  if (typeof WebSocket === "function" && inner instanceof WebSocket) {
    const key = Object.getOwnPropertySymbols(inner).find((sym) => sym.description === "response");
    const raw = key && inner[key]?.socket;
    if (raw instanceof net.Socket) return [raw, "websocket"];
  }
  throw new Error(`cannot reach the socket under ${outer?.constructor?.name ?? "no transport"}`);
}

// stdin as a queue of lines for `hold`, opened on first use (most runs have stdin on /dev/null).
let stdin = null;
function stdinLines(onChange) {
  if (!stdin) {
    stdin = { queue: [], ended: false };
    const lines = readline.createInterface({ input: process.stdin });
    lines.on("line", (line) => {
      stdin.queue.push(line);
      onChange();
    });
    lines.on("close", () => {
      stdin.ended = true;
      onChange();
    });
  }
  return stdin;
}

// ------------------------------------------------------------------------------ start
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
  // xmpp.js saves a token from <success/> without waiting for it: keep the last write to await at the end.
  let tokenWrite = Promise.resolve();
  if (opts["token-file"]) {
    const fs = await import("node:fs/promises");
    const file = opts["token-file"];
    xmpp.fast.fetchToken = async () => {
      try {
        return JSON.parse(await fs.readFile(file, "utf8"));
      } catch {
        return undefined;
      }
    };
    xmpp.fast.saveToken = (token) => {
      tokenWrite = fs.writeFile(file, JSON.stringify(token)).then(() => {
        emit({ event: "token", mechanism: token.mechanism, expiry: token.expiry });
      });
      return tokenWrite;
    };
    xmpp.fast.deleteToken = async () => {
      await fs.rm(file, { force: true });
      emit({ event: "token-deleted" });
    };
  }
  xmpp.on("send", (el) => {
    if (el.is("authenticate", NS_SASL2)) {
      emit({
        event: "authenticate",
        mechanism: el.attrs.mechanism,
        fast: Boolean(el.getChild("fast", NS_FAST)),
        requestToken: el.getChild("request-token", NS_FAST)?.attrs.mechanism ?? null,
      });
    }
  });
  // One attempt only: a failed login must end the run, not loop. --reconnect re-arms it once online.
  xmpp.reconnect.stop();
  const sm = xmpp.streamManagement;

  // Work around a race in @xmpp/connection 0.14: open() writes the stream header, waits for the write
  // callback, and only then listens for "open" (with a 2 s timeout). Over TLS the server's answering
  // header can be parsed before that callback runs; "open" is then missed and start() rejects with a
  // TimeoutError 2 s later even though the login went on. Listening before the write closes the gap.
  const open = xmpp.open.bind(xmpp);
  xmpp.open = (options) => {
    const opened = new Promise((resolve) => xmpp.once("open", resolve));
    return Promise.race([open(options), opened]);
  };

  // Every chunk read passes here: the socket listeners bind _onData when the first socket is attached,
  // so this wrapper is the one used, on reconnections too. --trace prints the chunk; `deaf` swallows it
  // before xmpp.js's parser sees it, which is what losing it in transit looks like to XEP-0198.
  let deaf = false;
  let ignored = 0;
  const onData = xmpp._onData.bind(xmpp);
  xmpp._onData = (data) => {
    if (opts.trace) emit({ event: deaf ? "in-ignored" : "in", ms: since(), data: data.toString("utf8") });
    if (deaf) {
      ignored += data.length;
      return;
    }
    return onData(data);
  };
  if (opts.trace) {
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
    if (opts.noSasl2 && el.is("features", NS_STREAMS)) {
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
    // Bind2 and SM answers sit below the first level: <success><bound><enabled/></bound></success>.
    // (Not looked for in stream features: what the server offers is no answer.)
    const nested = [];
    let smEl = xmlns === NS_SM ? el : null;
    const walk = (parent, path) => {
      for (const c of parent.getChildElements()) {
        if (path) nested.push(`${path}/${name(c)}`);
        if (!smEl && c.getNS() === NS_SM) smEl = c;
        walk(c, path ? `${path}/${name(c)}` : name(c));
      }
    };
    if (!el.is("features", NS_STREAMS)) walk(el, "");
    const { xmlns: _xmlns, ...smAttrs } = smEl?.attrs ?? {};
    emit({
      event: "nonza",
      name: el.name,
      xmlns,
      children: [...el.getChildElements(), ...gone].map(name),
      ...(gone.length > 0 && { hidden: gone.map(name) }),
      ...(nested.length > 0 && { nested }),
      ...(smEl && { sm: { name: smEl.name, ...smAttrs } }),
      online: xmpp.status === "online",
    });
  });
  xmpp.on("stanza", (el) => {
    // The RFC 6120 bind result is the only IQ we expect before going online.
    if (el.is("iq") && el.attrs.type === "result" && el.getChild("bind", NS_BIND1)) bind = "rfc6120";
  });

  // Actions wait on conditions; whatever may change one calls changed().
  const waiters = new Set();
  const changed = () => {
    for (const w of [...waiters]) w();
  };
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

  const inbox = [];
  const expectedErrors = new Map(); // message id -> handler, for errors an action expects
  xmpp.on("stanza", (el) => {
    if (!el.is("message")) return;
    const type = el.attrs.type ?? "normal";
    if (type === "error") {
      const expected = el.attrs.id !== undefined && expectedErrors.get(el.attrs.id);
      if (expected) {
        expectedErrors.delete(el.attrs.id);
        expected(el);
        return;
      }
      const err = el.getChild("error");
      const condition = err?.getChildElements()[0]?.name ?? null;
      fail(4, stage, Object.assign(new Error(`message error from ${el.attrs.from}`), { condition }));
      return;
    }
    const body = el.getChildText("body");
    if (body === null) return;
    const msg = { event: "message", from: el.attrs.from ?? null, to: el.attrs.to ?? null, type, body };
    const delay = el.getChild("delay", NS_DELAY);
    if (delay) msg.delay = { stamp: delay.attrs.stamp ?? null, from: delay.attrs.from ?? null };
    emit(msg);
    inbox.push(msg);
    changed();
  });

  // XEP-0198 as @xmpp/stream-management sees it. It emits "resumed" once the inline <resumed/> of a
  // SASL2 <success/> is handled (and its own unacknowledged stanzas are sent again); a resumed session
  // does not emit "online" again (Connection._ready(true)), so a second "online" means a fresh login.
  const describe = (stanza) => ({
    stanza: stanza.name,
    to: stanza.attrs.to ?? null,
    body: stanza.getChildText("body"),
  });
  sm.on("ack", (stanza) => emit({ event: "sm-ack", ...describe(stanza) }));
  sm.on("fail", (stanza) => emit({ event: "sm-fail", ...describe(stanza) }));
  let resumes = 0;
  let logins = 0;
  sm.on("resumed", () => {
    resumes += 1;
    emit({
      event: "resumed",
      jid: xmpp.jid?.toString() ?? null,
      id: sm.id,
      inbound: sm.inbound,
      outbound: sm.outbound,
      at: Date.now(),
    });
    changed();
  });

  let stopping = false;
  let dropping = false; // from `drop` until xmpp.js has noticed the loss
  let reconnecting = false; // --reconnect is armed
  let disconnects = 0;
  let lastLoss = null; // the resume and login counters when the transport was last lost
  xmpp.on("error", (err) => {
    if (stopping || dropping) {
      emit({ event: "warning", stage, message: String(err?.message ?? err) });
      return;
    }
    fail(stage === "login" ? 1 : 4, stage, err);
  });
  xmpp.on("disconnect", ({ clean } = {}) => {
    if (stopping) return;
    if (reconnecting || dropping) {
      disconnects += 1;
      lastLoss = { resumes, logins };
      emit({ event: "disconnect", clean: clean ?? null });
      changed();
      return;
    }
    fail(stage === "login" ? 1 : 4, stage, new Error(`the connection was closed (clean: ${clean})`));
  });
  xmpp.on("online", (jid) => {
    logins += 1;
    emit({ event: "online", jid: jid.toString(), sasl, bind });
    changed();
  });

  // The extension actions, set up before connecting so that their handlers see everything.
  const context = {
    xmpp,
    xml,
    emit,
    until,
    changed,
    expectError: (id, handler) => expectedErrors.set(id, handler),
  };
  const extensionActions = {};
  for (const extension of EXTENSIONS) {
    const runners = extension.setup(context);
    for (const name of Object.keys(extension.arity)) {
      if (typeof runners[name] !== "function") throw new Error(`no runner for the action ${name}`);
      extensionActions[name] = runners[name];
    }
  }

  try {
    await xmpp.start();
  } catch (err) {
    fail(1, "login", err);
    return;
  }

  // Bind2 answers <enabled/> after the "online" event, in the same tick: by now it is handled.
  emit({ event: "sm", enabled: sm.enabled, id: sm.id || null, max: sm.max ?? null });
  if (opts.reconnect !== undefined) {
    xmpp.reconnect.delay = opts.reconnect;
    xmpp.reconnect.on("reconnecting", () => emit({ event: "reconnecting", at: Date.now() }));
    xmpp.reconnect.on("reconnected", () => emit({ event: "reconnected", at: Date.now() }));
    xmpp.reconnect.start();
    reconnecting = true;
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
        await until(() => inbox.length >= n);
      } else if (name === "hold") {
        const lines = stdinLines(changed);
        await until(() => lines.queue.length > 0 || lines.ended);
        if (lines.queue.length === 0) throw new Error("stdin ended while holding");
        lines.queue.shift();
      } else if (name === "deaf") {
        deaf = true;
        emit({ event: "deaf" });
      } else if (name === "drop") {
        const seen = disconnects;
        const [socket, transport] = transportSocket(xmpp);
        dropping = true;
        socket.destroy();
        await until(() => disconnects > seen);
        dropping = false;
        deaf = false;
        emit({ event: "dropped", transport, inbound: sm.inbound, ignored });
      } else if (name === "resumed") {
        // after the last loss of the transport (the resumption may be over already)
        await until(() => lastLoss !== null);
        const seen = lastLoss;
        await until(() => resumes > seen.resumes || logins > seen.logins);
        if (logins > seen.logins) {
          throw new Error(`xmpp.js did not resume the session but logged in afresh as ${xmpp.jid}`);
        }
      } else if (name === "sleep") {
        await new Promise((resolve) => setTimeout(resolve, Number(args[0])));
      } else if (name === "stop") {
        break;
      } else {
        await extensionActions[name](...args);
      }
    }
    stage = "stop";
    stopping = true;
    await tokenWrite;
    await xmpp.stop();
    emit({ event: "offline" });
  } catch (err) {
    fail(4, stage, err);
    return;
  }
  clearTimeout(timer);
  finish(0);
}
