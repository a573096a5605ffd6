// Everyday IM actions for client.mjs: roster and presence subscriptions (RFC 6121), the message archive
// (XEP-0313 with XEP-0059 paging), blocking (XEP-0191). Each is what an IM application built on xmpp.js
// does: xmpp.js 0.14 has no roster, archive or blocking API, so the stanzas are written here.
//
// An action module exports
//   arity                { name: number of arguments }, read when the command line is parsed
//   setup(ctx)           called once the xmpp.js client exists (before it connects): registers handlers
//                        and returns { name: async (...args) => … }, one runner per action in `arity`
// ctx: { xmpp, xml, emit, until, changed, expectError(id, handler) }, built in client.mjs next to EXTENSIONS.
// Add a module to EXTENSIONS in client.mjs; its actions can then be mixed with the core ones.
//
// Actions:
//   roster                      fetch the roster (RFC 6121 §2.2); the server pushes changes from then on
//   roster-add JID NAME         add (or rename) a roster item (§2.3)
//   subscribe JID               ask for JID's presence (<presence type='subscribe'/>, §3.1.1)
//   approve JID                 let JID see ours (<presence type='subscribed'/>, §3.1.4)
//   expect-presence JID TYPE    wait for a presence of TYPE (available, unavailable, subscribe, …) from
//                               JID (a bare JID matches any of its resources) not matched before
//   expect-subscription JID S   wait until the roster, as fetched and pushed, has JID with subscription S
//   ping                        XEP-0199 ping to the server: once answered, all sent before has been handled
//   mam WITH MAX DIRECTION      page through the archive of messages with WITH, MAX a page, DIRECTION
//                               forward (<after/> the last id of each page) or backward (from an empty
//                               <before/>, then <before/> the first id of each page); stops after a page
//                               marked complete, or an empty one
//   blocklist                   fetch the blocklist (XEP-0191 §3.2)
//   block JID, unblock JID      XEP-0191 §3.3, §3.4
//   send-refused JID BODY       send a chat message that must come back as an error; waits for it
//
// Events (one JSON object per line, as client.mjs prints them):
//   {"event":"presence","from","to","type","show","status"}   every presence received (type "available"
//                               when the stanza has none)
//   {"event":"roster","items":[{"jid","name","subscription","ask","groups"}]}   the roster fetched
//   {"event":"roster-push","items":[…]}                        a roster push (answered with a result)
//   {"event":"roster-added","jid","name"}, {"event":"sent-presence","to","type"}
//   {"event":"subscription","jid","subscription"}              expect-subscription met
//   {"event":"pong"}
//   {"event":"mam-page","with","direction","page","after"|"before","results":[{"id","from","to","type",
//                               "body","stamp"}],"complete":bool,"first","last"}   one per page, in order
//   {"event":"blocklist","items":[jid…]}, {"event":"blocklist-push","action":"block"|"unblock","items"}
//   {"event":"blocked"|"unblocked","jid"}
//   {"event":"refused","to","body","from","errorType","condition","text","blocked":bool}   the error for
//                               a send-refused message ("blocked": with <blocked/> of XEP-0191's errors)

const NS_ROSTER = "jabber:iq:roster";
const NS_MAM = "urn:xmpp:mam:2";
const NS_RSM = "http://jabber.org/protocol/rsm";
const NS_FORWARD = "urn:xmpp:forward:0";
const NS_DELAY = "urn:xmpp:delay";
const NS_DATA = "jabber:x:data";
const NS_BLOCKING = "urn:xmpp:blocking";
const NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const NS_PING = "urn:xmpp:ping";
const MAX_PAGES = 100; // a guard against a server that never ends a result set

export const arity = {
  roster: 0,
  "roster-add": 2,
  subscribe: 1,
  approve: 1,
  "expect-presence": 2,
  "expect-subscription": 2,
  ping: 0,
  mam: 3,
  blocklist: 0,
  block: 1,
  unblock: 1,
  "send-refused": 2,
};

const bareOf = (jid) => (jid ?? "").split("/")[0];

function rosterItem(el) {
  return {
    jid: el.attrs.jid,
    name: el.attrs.name ?? null,
    subscription: el.attrs.subscription ?? "none",
    ask: el.attrs.ask ?? null,
    groups: el.getChildren("group").map((g) => g.text()),
  };
}

export function setup({ xmpp, xml, emit, until, changed, expectError }) {
  const own = () => bareOf(xmpp.jid?.toString());
  // a push must come from the account itself (RFC 6121 §2.1.6)
  const fromAccount = (stanza) => !stanza.attrs.from || bareOf(stanza.attrs.from) === own();

  // ------------------------------------------------------------------ presence
  const presences = []; // [{from, type, …, matched}]
  xmpp.on("stanza", (el) => {
    if (!el.is("presence")) return;
    const presence = {
      event: "presence",
      from: el.attrs.from ?? null,
      to: el.attrs.to ?? null,
      type: el.attrs.type ?? "available",
      show: el.getChildText("show"),
      status: el.getChildText("status"),
    };
    emit(presence);
    presences.push({ ...presence, matched: false });
    changed();
  });

  // ------------------------------------------------------------------ roster
  const roster = new Map(); // jid -> item, from the roster result and the pushes after it
  xmpp.iqCallee.set(NS_ROSTER, "query", ({ stanza, element }) => {
    if (!fromAccount(stanza)) return undefined; // service-unavailable (RFC 6121 §2.1.6)
    const items = element.getChildren("item").map(rosterItem);
    for (const item of items) {
      if (item.subscription === "remove") roster.delete(item.jid);
      else roster.set(item.jid, item);
    }
    emit({ event: "roster-push", items });
    changed();
    return true;
  });

  // ------------------------------------------------------------------ blocking pushes
  for (const action of ["block", "unblock"]) {
    xmpp.iqCallee.set(NS_BLOCKING, action, ({ stanza, element }) => {
      if (!fromAccount(stanza)) return undefined;
      emit({ event: "blocklist-push", action, items: element.getChildren("item").map((i) => i.attrs.jid) });
      return true;
    });
  }

  // ------------------------------------------------------------------ archive results
  const collecting = new Map(); // queryid -> results of the query under way
  xmpp.on("stanza", (el) => {
    if (!el.is("message")) return;
    const result = el.getChild("result", NS_MAM);
    const results = result && collecting.get(result.attrs.queryid);
    if (!results || !fromAccount(el)) return;
    const forwarded = result.getChild("forwarded", NS_FORWARD);
    const message = forwarded?.getChild("message");
    results.push({
      id: result.attrs.id ?? null,
      from: message?.attrs.from ?? null,
      to: message?.attrs.to ?? null,
      type: message?.attrs.type ?? "normal",
      body: message?.getChildText("body") ?? null,
      stamp: forwarded?.getChild("delay", NS_DELAY)?.attrs.stamp ?? null,
    });
  });
  let queries = 0;

  function mamForm(withJid) {
    const field = (name, value, type) =>
      xml("field", { var: name, ...(type && { type }) }, xml("value", {}, value));
    return xml(
      "x",
      { xmlns: NS_DATA, type: "submit" },
      field("FORM_TYPE", NS_MAM, "hidden"),
      field("with", withJid),
    );
  }

  let refusals = 0;

  return {
    async roster() {
      const query = await xmpp.iqCaller.get(xml("query", { xmlns: NS_ROSTER }));
      const items = query.getChildren("item").map(rosterItem);
      roster.clear();
      for (const item of items) roster.set(item.jid, item);
      emit({ event: "roster", items });
      changed();
    },

    async "roster-add"(jid, name) {
      await xmpp.iqCaller.set(xml("query", { xmlns: NS_ROSTER }, xml("item", { jid, name })));
      emit({ event: "roster-added", jid, name });
    },

    async subscribe(jid) {
      await xmpp.send(xml("presence", { to: jid, type: "subscribe" }));
      emit({ event: "sent-presence", to: jid, type: "subscribe" });
    },

    async approve(jid) {
      await xmpp.send(xml("presence", { to: jid, type: "subscribed" }));
      emit({ event: "sent-presence", to: jid, type: "subscribed" });
    },

    async "expect-presence"(jid, type) {
      const matches = (p) =>
        !p.matched && p.type === type && (jid.includes("/") ? p.from === jid : bareOf(p.from) === jid);
      await until(() => presences.some(matches));
      presences.find(matches).matched = true;
    },

    async "expect-subscription"(jid, subscription) {
      await until(() => roster.get(jid)?.subscription === subscription);
      emit({ event: "subscription", jid, subscription });
    },

    async ping() {
      await xmpp.iqCaller.get(xml("ping", { xmlns: NS_PING }), xmpp.jid.domain);
      emit({ event: "pong" });
    },

    async mam(withJid, max, direction) {
      if (direction !== "forward" && direction !== "backward") {
        throw new Error(`mam: the direction is forward or backward, not ${JSON.stringify(direction)}`);
      }
      const forward = direction === "forward";
      let cursor = null;
      for (let page = 1; ; page++) {
        if (page > MAX_PAGES) throw new Error(`mam: more than ${MAX_PAGES} pages`);
        queries += 1;
        const queryid = `mam${queries}`;
        const rsm = xml("set", { xmlns: NS_RSM }, xml("max", {}, String(max)));
        if (forward && cursor !== null) rsm.append(xml("after", {}, cursor));
        if (!forward) rsm.append(xml("before", {}, cursor ?? ""));
        const results = [];
        collecting.set(queryid, results);
        let answer;
        try {
          const query = xml("query", { xmlns: NS_MAM, queryid }, mamForm(withJid), rsm);
          answer = await xmpp.iqCaller.request(xml("iq", { type: "set", id: queryid }, query));
        } finally {
          collecting.delete(queryid);
        }
        const fin = answer.getChild("fin", NS_MAM);
        if (!fin) throw new Error("mam: no <fin/> in the answer");
        const set = fin.getChild("set", NS_RSM);
        const first = set?.getChildText("first") ?? null;
        const last = set?.getChildText("last") ?? null;
        const complete = fin.attrs.complete === "true";
        emit({
          event: "mam-page",
          with: withJid,
          direction,
          page,
          [forward ? "after" : "before"]: cursor,
          results,
          complete,
          first,
          last,
        });
        if (results.length === 0 || complete) return;
        cursor = forward ? last : first;
        if (cursor === null) throw new Error("mam: a page of results without <first/> and <last/>");
      }
    },

    async blocklist() {
      const list = await xmpp.iqCaller.get(xml("blocklist", { xmlns: NS_BLOCKING }));
      emit({ event: "blocklist", items: list.getChildren("item").map((i) => i.attrs.jid) });
    },

    async block(jid) {
      await xmpp.iqCaller.set(xml("block", { xmlns: NS_BLOCKING }, xml("item", { jid })));
      emit({ event: "blocked", jid });
    },

    async unblock(jid) {
      await xmpp.iqCaller.set(xml("unblock", { xmlns: NS_BLOCKING }, xml("item", { jid })));
      emit({ event: "unblocked", jid });
    },

    async "send-refused"(to, body) {
      refusals += 1;
      const id = `refused${refusals}`;
      const refused = new Promise((resolve) => expectError(id, resolve));
      await xmpp.send(xml("message", { to, type: "chat", id }, xml("body", {}, body)));
      const el = await refused;
      const error = el.getChild("error");
      const condition = error?.getChildElements().find((c) => c.getNS() === NS_STANZAS && c.name !== "text");
      emit({
        event: "refused",
        to,
        body,
        from: el.attrs.from ?? null,
        errorType: error?.attrs.type ?? null,
        condition: condition?.name ?? null,
        text: error?.getChildText("text", NS_STANZAS) ?? null,
        blocked: Boolean(error?.getChild("blocked", NS_BLOCKING_ERRORS)),
      });
    },
  };
}
