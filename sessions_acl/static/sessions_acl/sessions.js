// The clients and sessions page, live: a WebSocket to /account/sessions/live (sessions_acl/portal_live.py)
// says which sessions started or ended and which clients came online or went offline; the rows change
// in place, no reload. Rows arrive rendered by the server (the same templates as the page); this script
// only adds, marks and moves them. Reconnects after a lost connection, not after a refusal.
"use strict";

(function () {
  const status = document.getElementById("live-status");
  const liveTable = document.getElementById("live");
  if (!status || !liveTable) return;
  const csrf = document.querySelector("meta[name='csrf-token']")?.content || "";
  const local = window.xmppauthLocalTime || (() => {});
  let retry = 1000;

  function fragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    for (const input of template.content.querySelectorAll("input[name='csrfmiddlewaretoken']")) {
      if (!input.value) input.value = csrf;
    }
    local(template.content);
    return template.content;
  }

  function setBadge(row, text, kind) {
    const badge = row.querySelector("[data-status]");
    if (!badge) return;
    badge.textContent = text;
    badge.className = `badge ${kind}`;
  }

  function sessionRow(id) {
    return liveTable.querySelector(`tr[data-session="${CSS.escape(String(id))}"]`);
  }

  function clientRow(id) {
    return document.querySelector(`#clients tr[data-client="${CSS.escape(String(id))}"]`);
  }

  function started(item) {
    if (sessionRow(item.id)) return;
    liveTable.tBodies[0].prepend(fragment(item.html));
    liveTable.hidden = false;
    document.getElementById("no-live")?.remove();
  }

  function ended(id) {
    const row = sessionRow(id);
    if (!row || row.classList.contains("ended")) return;
    row.classList.add("ended");
    setBadge(row, "Ended", "ended");
    row.querySelector("td.row-actions")?.replaceChildren();
  }

  function online(item) {
    const row = clientRow(item.id);
    if (row) {
      if (!row.classList.contains("revoked")) setBadge(row, "Online", "online");
      return;
    }
    const table = document.getElementById("clients");
    table.tBodies[0].prepend(fragment(item.html));
    table.hidden = false;
    document.getElementById("no-clients")?.remove();
  }

  function offline(id) {
    const row = clientRow(id);
    if (row && !row.classList.contains("revoked")) setBadge(row, "Offline", "offline");
  }

  function apply(message) {
    const startedIds = new Set(message.started.map((item) => String(item.id)));
    const onlineIds = new Set(message.online.map((item) => String(item.id)));
    let endedIds = message.ended.map(String);
    let offlineIds = message.offline.map(String);
    if (message.snapshot) {
      // The page may be older than the connection: whatever it shows and the server no longer has is over.
      endedIds = [...liveTable.querySelectorAll("tr[data-session]")]
        .map((row) => row.dataset.session).filter((id) => !startedIds.has(id));
      offlineIds = [...document.querySelectorAll("#clients tr[data-client]")]
        .map((row) => row.dataset.client).filter((id) => !onlineIds.has(id));
    }
    message.started.forEach(started);
    endedIds.forEach(ended);
    message.online.forEach(online);
    offlineIds.forEach(offline);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${status.dataset.url}`);
    socket.addEventListener("open", () => {
      retry = 1000;
      status.classList.remove("offline");
      status.textContent = "Live: this page updates itself when clients come and go.";
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "changes") apply(message);
    });
    socket.addEventListener("close", (event) => {
      status.classList.add("offline");
      if (event.code === 4401 || event.code === 4403) {
        status.textContent = "Not updating: you are signed out here. Reload the page to sign in again.";
        return;
      }
      status.textContent = "Not updating: the connection to the server was lost. Trying again…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    });
  }

  connect();
})();
