// xmppauth web client: an XMPP login in the browser, with a security key or passkey as the second factor.
//
// XMPP over WebSocket (RFC 7395, subprotocol "xmpp"), SASL2 (XEP-0388) with SCRAM-SHA-256 (RFC 5802,
// RFC 7677; PLAIN only when no SCRAM is offered) and Bind2 (XEP-0386), then the second-factor task the
// server asks for: X-WEBAUTHN (docs/protocol/webauthn-task.md) answered with navigator.credentials.get(),
// or TOTP (XEP-0400, docs/protocol/totp-task.md) with a code typed into the page. After <success/> it
// pings the server (XEP-0199) and closes the stream. Every step is written to the log on the page.
// See docs/protocol/webclient.md. No framework, no build step: plain modern JavaScript and WebCrypto.
"use strict";

(() => {
  const NS = {
    FRAMING: "urn:ietf:params:xml:ns:xmpp-framing",
    STREAMS: "http://etherx.jabber.org/streams",
    STREAM_ERRORS: "urn:ietf:params:xml:ns:xmpp-streams",
    SASL: "urn:ietf:params:xml:ns:xmpp-sasl",
    SASL2: "urn:xmpp:sasl:2",
    BIND2: "urn:xmpp:bind:0",
    WEBAUTHN: "urn:xmppauth:webauthn:0",
    MFA: "urn:xmpp:mfa:0",
    PING: "urn:xmpp:ping",
    CLIENT: "jabber:client",
    STANZAS: "urn:ietf:params:xml:ns:xmpp-stanzas",
  };
  const SOFTWARE = "xmppauth web client";
  const BIND_TAG = "web";
  const WAIT_MS = 30000; // for each answer of the server
  const CLOSE_WAIT_MS = 3000; // for the server's <close/> and the WebSocket closing handshake
  // Preferred first; PLAIN only when the server offers no SCRAM we can do.
  const MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"];
  const SCRAM_HASHES = {
    "SCRAM-SHA-256": { name: "SHA-256", bits: 256 },
    "SCRAM-SHA-512": { name: "SHA-512", bits: 512 },
  };
  const MIN_ITERATIONS = 4096; // RFC 7677 §4: at least 4096
  const WEBAUTHN_TASK = "X-WEBAUTHN";
  const TOTP_TASK = "TOTP";
  const UA_KEY = "xmppauth-webclient-user-agent-id";

  /** The server refused the login, or the page could not or would not go on. */
  class Failure extends Error {
    constructor(condition, text) {
      super(text ? `${condition}: ${text}` : condition);
      this.condition = condition;
      this.text = text || "";
    }
  }

  /** The connection or the stream broke, or the server broke the protocol. */
  class ConnectionProblem extends Error {}

  // ------------------------------------------------------------------------------------ the page
  const logList = document.getElementById("log");
  const form = document.getElementById("login-form");
  const button = document.getElementById("login");
  const showXml = document.getElementById("show-xml");

  function log(kind, text) {
    const item = document.createElement("li");
    item.dataset.kind = kind;
    item.textContent = text;
    logList.append(item);
    item.scrollIntoView({ block: "nearest" });
  }

  function logXml(direction, xml) {
    if (showXml.checked) {
      log("xml", `${direction} ${xml}`);
    }
  }

  // ------------------------------------------------------------------------------------ encoding
  const utf8 = new TextEncoder();
  const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

  function escText(value) {
    return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function escAttr(value) {
    return escText(value).replace(/"/g, "&quot;").replace(/'/g, "&apos;");
  }

  function b64(bytes) {
    let binary = "";
    for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
    return btoa(binary);
  }

  function unb64(text) {
    const trimmed = (text || "").trim();
    if (trimmed === "" || trimmed === "=") return new Uint8Array(0); // XEP-0388: "=" is empty
    let binary;
    try {
      binary = atob(trimmed);
    } catch {
      throw new Failure("malformed-response", "the server sent malformed base64");
    }
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  }

  function b64url(bytes) {
    return b64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function unb64url(text) {
    const standard = text.replace(/-/g, "+").replace(/_/g, "/");
    return unb64(standard + "=".repeat((4 - (standard.length % 4)) % 4));
  }

  // ------------------------------------------------------------------------------------ XML in
  function childOf(element, ns, name) {
    for (const child of element.children) {
      if (child.namespaceURI === ns && child.localName === name) return child;
    }
    return null;
  }

  function childrenOf(element, ns, name) {
    return [...element.children].filter((c) => c.namespaceURI === ns && c.localName === name);
  }

  function textOf(element, ns, name) {
    const child = childOf(element, ns, name);
    return child === null ? null : child.textContent.trim();
  }

  /** The defined condition of an error element (the first child in its namespace but <text/>). */
  function conditionOf(element, ns, fallback) {
    for (const child of element.children) {
      if (child.namespaceURI === ns && child.localName !== "text") return child.localName;
    }
    return fallback;
  }

  function saslFailure(element) {
    return new Failure(
      conditionOf(element, NS.SASL, "not-authorized"),
      textOf(element, NS.SASL2, "text") || "",
    );
  }

  // ------------------------------------------------------------------------------------ RFC 7395
  /** One XMPP stream over a WebSocket: each text message is one top-level element. */
  class Stream {
    constructor(url) {
      this.url = url;
      this.ws = null;
      this.queue = []; // elements received and not yet asked for
      this.waiter = null; // {resolve, reject, timer} of the pending receive()
      this.error = null; // once set, every later receive() fails with it
      this.closedByServer = false;
      this.socketClosed = null; // a promise, settled when the WebSocket has closed
    }

    connect() {
      return new Promise((resolve, reject) => {
        let ws;
        try {
          ws = new WebSocket(this.url, "xmpp"); // RFC 7395 §3.2: the "xmpp" subprotocol
        } catch (exc) {
          reject(new ConnectionProblem(`cannot open a WebSocket to ${this.url}: ${exc.message}`));
          return;
        }
        this.ws = ws;
        let opened = false;
        this.socketClosed = new Promise((closed) => {
          ws.addEventListener("close", (event) => {
            closed();
            const why = `the WebSocket closed (code ${event.code}${event.reason ? `, ${event.reason}` : ""})`;
            if (!opened) {
              reject(new ConnectionProblem(`could not connect to ${this.url}: ${why}`));
            }
            this.fail(new ConnectionProblem(why));
          });
        });
        ws.addEventListener("open", () => {
          opened = true;
          if (ws.protocol !== "xmpp") {
            ws.close(1002);
            reject(new ConnectionProblem("the server did not accept the WebSocket subprotocol 'xmpp'"));
            return;
          }
          resolve();
        });
        ws.addEventListener("message", (event) => this.frame(event.data));
      });
    }

    frame(data) {
      if (typeof data !== "string") {
        this.fail(new ConnectionProblem("a binary WebSocket frame (RFC 7395 §3.2 allows text only)"));
        return;
      }
      logXml("←", data);
      const doc = new DOMParser().parseFromString(data, "application/xml");
      if (doc.getElementsByTagNameNS("*", "parsererror").length > 0) {
        this.fail(new ConnectionProblem("the server sent malformed XML"));
        return;
      }
      const element = doc.documentElement;
      if (this.waiter !== null) {
        const waiter = this.waiter;
        this.waiter = null;
        clearTimeout(waiter.timer);
        waiter.resolve(element);
      } else {
        this.queue.push(element);
      }
    }

    fail(error) {
      if (this.error === null) this.error = error;
      if (this.waiter !== null) {
        const waiter = this.waiter;
        this.waiter = null;
        clearTimeout(waiter.timer);
        waiter.reject(this.error);
      }
    }

    next(timeout) {
      if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
      if (this.error !== null) return Promise.reject(this.error);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.waiter = null;
          reject(new ConnectionProblem(`no answer from the server within ${timeout / 1000} s`));
        }, timeout);
        this.waiter = { resolve, reject, timer };
      });
    }

    /** The next element that is not framing; the server's <close/> or a stream error throws. */
    async receive(timeout = WAIT_MS) {
      for (;;) {
        const element = await this.next(timeout);
        if (element.namespaceURI === NS.FRAMING && element.localName === "open") continue;
        if (element.namespaceURI === NS.FRAMING && element.localName === "close") {
          this.closedByServer = true;
          throw new ConnectionProblem("the server closed the stream");
        }
        if (element.namespaceURI === NS.STREAMS && element.localName === "error") {
          const condition = conditionOf(element, NS.STREAM_ERRORS, "undefined-condition");
          const text = textOf(element, NS.STREAM_ERRORS, "text");
          throw new ConnectionProblem(`stream error ${condition}${text ? `: ${text}` : ""}`);
        }
        return element;
      }
    }

    /** XML text to the server; ``shown`` is what the XML log shows instead (secrets left out). */
    send(xml, shown = xml) {
      if (this.ws === null || this.ws.readyState !== WebSocket.OPEN) {
        throw new ConnectionProblem("the WebSocket is not open");
      }
      logXml("→", shown);
      this.ws.send(xml);
    }

    /** RFC 7395 §3.4: <open/>; the server's <stream:features/>. */
    async open(domain) {
      this.send(`<open xmlns='${NS.FRAMING}' to='${escAttr(domain)}' version='1.0'/>`);
      const features = await this.receive();
      if (!(features.namespaceURI === NS.STREAMS && features.localName === "features")) {
        throw new ConnectionProblem(`expected <stream:features/>, got <${features.localName}/>`);
      }
      return features;
    }

    /** RFC 7395 §3.6: <close/>, the server's <close/>, then the WebSocket closing handshake. */
    async close() {
      const ws = this.ws;
      if (ws === null) return;
      if (ws.readyState === WebSocket.OPEN && !this.closedByServer && this.error === null) {
        try {
          this.send(`<close xmlns='${NS.FRAMING}'/>`);
          for (;;) await this.receive(CLOSE_WAIT_MS); // until the server's <close/> or an error
        } catch {
          // the server's <close/>, a closed socket or no answer: the end either way
        }
      }
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000);
      await Promise.race([this.socketClosed, new Promise((done) => setTimeout(done, CLOSE_WAIT_MS))]);
    }
  }

  // ------------------------------------------------------------------------------------ SCRAM
  /** RFC 4013 SASLprep, near enough for a browser: non-ASCII spaces to a space, the characters
   * "commonly mapped to nothing" removed, then NFKC (the server applies the full profile). */
  function saslprep(text) {
    return text
      .replace(/[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/g, "")
      .replace(/[\u00A0\u1680\u2000-\u200A\u202F\u205F\u3000]/g, " ")
      .normalize("NFKC");
  }

  function saslname(text) {
    return text.replace(/=/g, "=3D").replace(/,/g, "=2C"); // RFC 5802 §5.1
  }

  async function hmac(hash, key, data) {
    const imported = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash }, false, ["sign"]);
    return new Uint8Array(await crypto.subtle.sign("HMAC", imported, data));
  }

  function xor(a, b) {
    return a.map((byte, i) => byte ^ b[i]);
  }

  function sameBytes(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i += 1) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  /** The client side of one SCRAM exchange without channel binding (gs2 header "n,,"): a browser
   * cannot reach the TLS channel under its WebSocket. */
  class Scram {
    constructor(mechanism, username, password) {
      this.hash = SCRAM_HASHES[mechanism];
      this.password = saslprep(password);
      this.nonce = b64(crypto.getRandomValues(new Uint8Array(24)));
      this.gs2Header = "n,,";
      this.clientFirstBare = `n=${saslname(saslprep(username))},r=${this.nonce}`;
      this.serverSignature = null;
    }

    first() {
      return utf8.encode(this.gs2Header + this.clientFirstBare);
    }

    /** Checks the server-first-message; the client-final-message. */
    async final(serverFirstBytes) {
      let serverFirst;
      try {
        serverFirst = strictUtf8.decode(serverFirstBytes);
      } catch {
        throw new Error("the server-first-message is not UTF-8");
      }
      const attributes = serverFirst.split(",").map((part) => {
        const at = part.indexOf("=");
        if (at !== 1) throw new Error("malformed server-first-message");
        return [part.slice(0, 1), part.slice(2)];
      });
      if (attributes.some(([key]) => key === "m")) throw new Error("the reserved attribute m");
      if (attributes.slice(0, 3).map(([key]) => key).join() !== "r,s,i") {
        throw new Error("the server-first-message must start with r=, s=, i=");
      }
      const [[, nonce], [, saltText], [, iterationText]] = attributes;
      if (!/^[\x21-\x2b\x2d-\x7e]+$/.test(nonce) || !nonce.startsWith(this.nonce) || nonce === this.nonce) {
        throw new Error("the server nonce does not extend the client nonce");
      }
      const salt = unb64(saltText);
      if (salt.length === 0) throw new Error("empty salt");
      if (!/^[1-9][0-9]*$/.test(iterationText)) throw new Error("malformed iteration count");
      const iterations = Number(iterationText);
      if (iterations < MIN_ITERATIONS) throw new Error(`iteration count ${iterations} is below ${MIN_ITERATIONS}`);

      const { name, bits } = this.hash;
      const passwordKey = await crypto.subtle.importKey("raw", utf8.encode(this.password), "PBKDF2", false, [
        "deriveBits",
      ]);
      const salted = new Uint8Array(
        await crypto.subtle.deriveBits({ name: "PBKDF2", hash: name, salt, iterations }, passwordKey, bits),
      );
      const clientKey = await hmac(name, salted, utf8.encode("Client Key"));
      const storedKey = new Uint8Array(await crypto.subtle.digest(name, clientKey));
      const serverKey = await hmac(name, salted, utf8.encode("Server Key"));
      const withoutProof = `c=${b64(utf8.encode(this.gs2Header))},r=${nonce}`;
      const authMessage = utf8.encode(`${this.clientFirstBare},${serverFirst},${withoutProof}`);
      const proof = xor(clientKey, await hmac(name, storedKey, authMessage));
      this.serverSignature = await hmac(name, serverKey, authMessage);
      return utf8.encode(`${withoutProof},p=${b64(proof)}`);
    }

    /** Whether the server-final-message ("v=…") proves that the server knows the password's keys. */
    verify(serverFinalBytes) {
      if (this.serverSignature === null) return false;
      let text;
      try {
        text = strictUtf8.decode(serverFinalBytes);
      } catch {
        return false;
      }
      const first = text.split(",")[0];
      if (!first.startsWith("v=")) return false; // "e=…" is a server error
      try {
        return sameBytes(unb64(first.slice(2)), this.serverSignature);
      } catch {
        return false;
      }
    }
  }

  // ------------------------------------------------------------------------------------ WebAuthn
  function requestOptions(json) {
    if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    const options = { ...json, challenge: unb64url(json.challenge) }; // browsers before WebAuthn L3
    if (Array.isArray(json.allowCredentials)) {
      options.allowCredentials = json.allowCredentials.map((c) => ({ ...c, id: unb64url(c.id) }));
    }
    return options;
  }

  function credentialJson(credential) {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    const response = credential.response;
    const json = {
      id: credential.id,
      rawId: b64url(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: b64url(response.clientDataJSON),
        authenticatorData: b64url(response.authenticatorData),
        signature: b64url(response.signature),
      },
      clientExtensionResults: credential.getClientExtensionResults(),
    };
    if (response.userHandle) json.response.userHandle = b64url(response.userHandle);
    if (credential.authenticatorAttachment) json.authenticatorAttachment = credential.authenticatorAttachment;
    return json;
  }

  function webauthnAvailable() {
    return window.isSecureContext && typeof PublicKeyCredential === "function" && !!navigator.credentials;
  }

  // ------------------------------------------------------------------------------------ SASL2
  /** One <authenticate/> and what follows, to <success/> (returned) or <failure/> (thrown). */
  class Login {
    constructor(stream, { username, domain, password, totpCode, userAgentId }) {
      this.stream = stream;
      this.username = username;
      this.domain = domain;
      this.password = password;
      this.totpCode = totpCode;
      this.userAgentId = userAgentId;
      this.scram = null;
      this.verified = false;
      this.task = null;
      this.doneTasks = [];
    }

    async authenticate(mechanism) {
      let initial;
      if (mechanism === "PLAIN") {
        initial = utf8.encode(`\0${this.username}\0${this.password}`);
        this.verified = true; // PLAIN proves nothing about the server: nothing to check
      } else {
        this.scram = new Scram(mechanism, this.username, this.password);
        initial = this.scram.first();
      }
      const agent =
        `<user-agent id='${escAttr(this.userAgentId)}'><software>${escText(SOFTWARE)}</software>` +
        `<device>${escText(deviceName())}</device></user-agent>`;
      const bind = `<bind xmlns='${NS.BIND2}'><tag>${escText(BIND_TAG)}</tag></bind>`;
      const xml = (response) =>
        `<authenticate xmlns='${NS.SASL2}' mechanism='${escAttr(mechanism)}'>` +
        `<initial-response>${response}</initial-response>${agent}${bind}</authenticate>`;
      const initialText = b64(initial);
      this.stream.send(xml(initialText), mechanism === "PLAIN" ? xml("(password left out)") : xml(initialText));
      return this.exchange();
    }

    async exchange() {
      for (;;) {
        const element = await this.stream.receive();
        if (element.namespaceURI !== NS.SASL2) {
          throw new ConnectionProblem(`unexpected <${element.localName}/> during SASL2`);
        }
        switch (element.localName) {
          case "challenge":
            await this.onChallenge(element);
            break;
          case "continue":
            await this.onContinue(element);
            break;
          case "task-data":
            await this.onTaskData(element);
            break;
          case "success":
            if (!this.verify(textOf(element, NS.SASL2, "additional-data"))) {
              throw new Failure("server-not-verified", "the server's SCRAM signature is wrong: not trusting it");
            }
            return element;
          case "failure":
            throw saslFailure(element);
          default:
            throw new ConnectionProblem(`unexpected <${element.localName}/> during SASL2`);
        }
      }
    }

    /** The server's proof (SCRAM's server-final-message), checked once, wherever it comes. */
    verify(additionalData) {
      if (this.verified) return true;
      if (this.scram === null || !this.scram.verify(unb64(additionalData))) return false;
      this.verified = true;
      log("verified", "the server proved that it knows the password (SCRAM server signature checked)");
      return true;
    }

    async onChallenge(element) {
      if (this.scram === null || this.scram.serverSignature !== null) {
        throw await this.abort("an unexpected SASL challenge");
      }
      let final;
      try {
        final = await this.scram.final(unb64(element.textContent));
      } catch (exc) {
        throw await this.abort(`a bad SCRAM challenge: ${exc.message}`);
      }
      this.stream.send(`<response xmlns='${NS.SASL2}'>${b64(final)}</response>`);
    }

    async onContinue(element) {
      if (!this.verify(textOf(element, NS.SASL2, "additional-data"))) {
        throw await this.abort("the server's SCRAM signature is wrong: not trusting it");
      }
      const tasksElement = childOf(element, NS.SASL2, "tasks");
      const offered = tasksElement === null ? [] : childrenOf(tasksElement, NS.SASL2, "task").map((t) => t.textContent.trim());
      const text = textOf(element, NS.SASL2, "text");
      log("tasks", `tasks offered: ${offered.join(" ") || "(none)"}${text ? ` (${text})` : ""}`);
      const task = this.choose(offered);
      if (task === null) {
        throw await this.abort(this.cannotAnswer(offered));
      }
      this.task = task;
      this.doneTasks.push(task);
      if (task === TOTP_TASK) {
        log("task", `task ${task}: answering with the code from the authenticator app`);
        this.stream.send(
          `<next xmlns='${NS.SASL2}' task='${escAttr(task)}'><totp xmlns='${NS.MFA}'>${escText(this.totpCode)}</totp></next>`,
        );
      } else {
        log("task", `task ${task}: asking the server for a security key challenge`);
        this.stream.send(`<next xmlns='${NS.SASL2}' task='${escAttr(task)}'/>`);
      }
    }

    choose(offered) {
      if (this.totpCode && offered.includes(TOTP_TASK)) return TOTP_TASK; // the user typed a code: use it
      if (offered.includes(WEBAUTHN_TASK) && webauthnAvailable()) return WEBAUTHN_TASK;
      return null;
    }

    cannotAnswer(offered) {
      if (offered.includes(TOTP_TASK)) {
        return "the server asks for a code from your authenticator app: type it into the code field and log in again";
      }
      if (offered.includes(WEBAUTHN_TASK)) {
        return "the server asks for a security key, and this browser cannot use one here (WebAuthn needs HTTPS or localhost)";
      }
      return `this page cannot answer any of the tasks offered (${offered.join(" ") || "none"})`;
    }

    async onTaskData(element) {
      if (this.task === WEBAUTHN_TASK) {
        await this.answerWebauthn(childOf(element, NS.WEBAUTHN, "options"));
      } else if (this.task === TOTP_TASK && childOf(element, NS.MFA, "totp") !== null) {
        this.stream.send(
          `<task-data xmlns='${NS.SASL2}'><totp xmlns='${NS.MFA}'>${escText(this.totpCode)}</totp></task-data>`,
        );
      } else {
        throw await this.abort(`unexpected <task-data/> for ${this.task || "no task"}`);
      }
    }

    async answerWebauthn(optionsElement) {
      if (optionsElement === null) {
        throw await this.abort(`expected <options xmlns='${NS.WEBAUTHN}'/> from the server`);
      }
      let publicKey;
      let json;
      try {
        json = JSON.parse(optionsElement.textContent);
        publicKey = requestOptions(json);
      } catch (exc) {
        throw await this.abort(`the server's WebAuthn options are not usable: ${exc.message}`);
      }
      const keys = Array.isArray(json.allowCredentials) ? json.allowCredentials.length : 0;
      log(
        "webauthn",
        `security key: asking the browser for an assertion for ${json.rpId || location.hostname}` +
          ` (${keys} registered key${keys === 1 ? "" : "s"}, user verification ${json.userVerification || "preferred"})`,
      );
      let credential;
      try {
        credential = await navigator.credentials.get({ publicKey });
      } catch (exc) {
        throw await this.abort(`the browser gave no assertion (${exc.name}: ${exc.message})`);
      }
      if (!credential) {
        throw await this.abort("the browser gave no assertion");
      }
      const answer = JSON.stringify(credentialJson(credential));
      log("webauthn", `security key: the authenticator signed with credential ${credential.id}; sending it`);
      this.stream.send(
        `<task-data xmlns='${NS.SASL2}'><assertion xmlns='${NS.WEBAUTHN}'>${escText(answer)}</assertion></task-data>`,
      );
    }

    /** XEP-0388: <abort/>; the server answers <failure/>. Returns the Failure to throw. */
    async abort(reason) {
      log("abort", `aborting the login: ${reason}`);
      try {
        this.stream.send(`<abort xmlns='${NS.SASL2}'/>`);
        const reply = await this.stream.receive();
        if (reply.namespaceURI === NS.SASL2 && reply.localName === "failure") {
          return new Failure(saslFailure(reply).condition, reason);
        }
      } catch {
        // the stream is gone: the reason is what matters
      }
      return new Failure("aborted", reason);
    }
  }

  function deviceName() {
    const brands = navigator.userAgentData?.brands?.filter((b) => !/not.a.brand/i.test(b.brand)) || [];
    const platform = navigator.userAgentData?.platform || navigator.platform || "";
    const browser = brands.length > 0 ? brands[brands.length - 1].brand : "a web browser";
    return platform ? `${browser} on ${platform}` : browser;
  }

  function userAgentId() {
    try {
      let id = localStorage.getItem(UA_KEY);
      if (!id) {
        id = crypto.randomUUID();
        localStorage.setItem(UA_KEY, id);
      }
      return id;
    } catch {
      return crypto.randomUUID(); // storage refused: a new id each time (Bind2 then gives a new resource)
    }
  }

  // ------------------------------------------------------------------------------------ XEP-0199
  async function ping(stream, domain) {
    const id = `ping-${crypto.randomUUID()}`;
    const started = performance.now();
    stream.send(
      `<iq xmlns='${NS.CLIENT}' type='get' id='${escAttr(id)}' to='${escAttr(domain)}'><ping xmlns='${NS.PING}'/></iq>`,
    );
    for (;;) {
      const element = await stream.receive();
      if (element.localName === "iq" && element.getAttribute("id") === id) {
        const millis = Math.round(performance.now() - started);
        if (element.getAttribute("type") === "result") {
          log("ping", `ping: the server answered in ${millis} ms`);
        } else {
          const error = childOf(element, NS.CLIENT, "error") || element.querySelector("error");
          const condition = error === null ? "unknown" : conditionOf(error, NS.STANZAS, "undefined-condition");
          log("error", `ping: the server answered with an error (${condition})`);
        }
        return;
      }
      // anything else meanwhile (the stream features after <success/>) is not ours to answer
    }
  }

  // ------------------------------------------------------------------------------------ one login
  function parseJid(text) {
    const bare = text.trim().split("/")[0];
    const at = bare.lastIndexOf("@");
    if (at <= 0 || at === bare.length - 1) return null;
    return { username: bare.slice(0, at), domain: bare.slice(at + 1).toLowerCase() };
  }

  async function run({ jid, password, totpCode, url }) {
    const stream = new Stream(url);
    let outcome = "failure";
    try {
      if (!window.isSecureContext || !crypto.subtle) {
        throw new Failure("insecure-page", "open this page over HTTPS (or on localhost): WebCrypto and WebAuthn need it");
      }
      log("connecting", `connecting to ${url}`);
      await stream.connect();
      log("connected", `connected: WebSocket open with subprotocol ${stream.ws.protocol}`);
      const features = await stream.open(jid.domain);
      const authentication = childOf(features, NS.SASL2, "authentication");
      if (authentication === null) {
        throw new Failure("unsupported", "the server does not offer SASL2 (XEP-0388)");
      }
      const offered = childrenOf(authentication, NS.SASL2, "mechanism").map((m) => m.textContent.trim());
      log("offered", `mechanisms offered: ${offered.join(" ") || "(none)"}`);
      const mechanism = MECHANISMS.find((m) => offered.includes(m));
      if (mechanism === undefined) {
        throw new Failure("invalid-mechanism", `the server offers none of ${MECHANISMS.join(", ")}`);
      }
      log("authenticate", `authenticating as ${jid.username}@${jid.domain} with ${mechanism}`);
      const login = new Login(stream, {
        username: jid.username,
        domain: jid.domain,
        password,
        totpCode,
        userAgentId: userAgentId(),
      });
      const success = await login.authenticate(mechanism);
      const identity = textOf(success, NS.SASL2, "authorization-identifier") || "";
      const bound = childOf(success, NS.BIND2, "bound") !== null;
      const factors = login.doneTasks.length > 0 ? `; second factor: ${login.doneTasks.join(", ")}` : "";
      log("success", `success: logged in as ${identity}${bound ? " (bound with Bind2)" : ""}${factors}`);
      outcome = "success";
      await ping(stream, jid.domain);
    } catch (exc) {
      if (exc instanceof Failure) {
        log("failure", `failure: ${exc.condition}${exc.text ? `: ${exc.text}` : ""}`);
      } else if (exc instanceof ConnectionProblem) {
        log("error", `connection error: ${exc.message}`);
      } else {
        log("error", `error: ${exc && exc.message ? exc.message : exc}`);
      }
    } finally {
      await stream.close();
      log("closed", "closed: the stream and the WebSocket are closed");
    }
    return outcome;
  }

  // ------------------------------------------------------------------------------------ the form
  const urlField = document.getElementById("url");
  if (location.host) {
    urlField.value = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/xmpp-websocket`;
  }
  if (!webauthnAvailable()) {
    log("error", "this browser offers no WebAuthn on this page (it needs HTTPS or localhost): security keys cannot answer");
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const jid = parseJid(form.elements.jid.value);
    const password = form.elements.password.value;
    const url = urlField.value.trim();
    logList.replaceChildren();
    if (jid === null) {
      log("error", "type the address as name@domain");
      form.elements.jid.focus();
      return;
    }
    if (!password) {
      log("error", "type the password");
      form.elements.password.focus();
      return;
    }
    if (!/^wss?:\/\//.test(url)) {
      log("error", "the WebSocket address must start with ws:// or wss://");
      return;
    }
    button.disabled = true;
    logList.dataset.state = "running";
    delete logList.dataset.outcome;
    try {
      logList.dataset.outcome = await run({
        jid,
        password,
        totpCode: form.elements.totp.value.trim(),
        url,
      });
    } finally {
      logList.dataset.state = "closed";
      button.disabled = false;
    }
  });
})();
