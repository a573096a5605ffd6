// The portal's WebAuthn ceremonies (accounts/views/webauthn.py): a button with data-webauthn="get"
// signs in or confirms with a security key or passkey; a form with data-webauthn="create" registers one.
// data-options and data-verify name the two endpoints; data-next, where to go afterwards.
"use strict";

(function () {
  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  const supported =
    window.PublicKeyCredential !== undefined &&
    typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function" &&
    typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function";

  function say(status, text, isError) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  // POST JSON; the answer's JSON, or null when the server sent the browser elsewhere (sign-in expired,
  // re-authentication needed): then the page goes there.
  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      body: JSON.stringify(body),
    });
    if (response.redirected) {
      window.location.assign(response.url);
      return null;
    }
    try {
      return await response.json();
    } catch (error) {
      return { error: "The server's answer could not be read: reload the page and try again." };
    }
  }

  function browserError(error) {
    if (error && error.name === "NotAllowedError") {
      return "The security key did not answer (cancelled, or it took too long): try again.";
    }
    if (error && error.name === "InvalidStateError") {
      return "This security key or passkey is already registered for your account.";
    }
    return "Your browser could not use the security key: " + (error && error.message ? error.message : error);
  }

  // Options, the browser's ceremony, the answer; then the next page, or the reason why not.
  async function ceremony(status, optionsUrl, verifyUrl, extra, run) {
    say(status, "Waiting for your security key or passkey…");
    const options = await post(optionsUrl, extra);
    if (options === null) return;
    if (options.error) {
      say(status, options.error, true);
      return;
    }
    let credential;
    try {
      credential = await run(options.publicKey);
    } catch (error) {
      say(status, browserError(error), true);
      return;
    }
    const result = await post(verifyUrl, Object.assign({ credential: credential.toJSON() }, extra));
    if (result === null) return;
    if (result.redirect) {
      say(status, "Done.");
      window.location.assign(result.redirect);
    } else {
      say(status, result.error || "That did not work: try again.", true);
    }
  }

  function statusOf(element) {
    return element.parentElement.querySelector(".status");
  }

  for (const button of document.querySelectorAll('button[data-webauthn="get"]')) {
    const status = statusOf(button);
    if (!supported) {
      button.disabled = true;
      say(status, "This browser cannot use security keys or passkeys here.", true);
      continue;
    }
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await ceremony(status, button.dataset.options, button.dataset.verify, { next: button.dataset.next || "" },
          (json) => navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(json) }));
      } finally {
        button.disabled = false;
      }
    });
  }

  for (const form of document.querySelectorAll('form[data-webauthn="create"]')) {
    const status = form.querySelector(".status");
    const button = form.querySelector('button[type="submit"]');
    if (!supported) {
      button.disabled = true;
      say(status, "This browser cannot register security keys or passkeys.", true);
      continue;
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = form.elements.name.value.trim();
      if (!name) {
        say(status, "Give the security key or passkey a name.", true);
        form.elements.name.focus();
        return;
      }
      button.disabled = true;
      try {
        await ceremony(status, form.dataset.options, form.dataset.verify, { name: name },
          (json) => navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(json) }));
      } finally {
        button.disabled = false;
      }
    });
  }
})();
