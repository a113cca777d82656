// Truxe's hosted pages: the one script, for passkeys. A form marked
// data-passkey="create" or "get" carries the server's WebAuthn options in
// data-options; on submit (or at once, with data-autostart) the browser's
// authenticator is asked, its answer is put in the form's `credential`
// field as JSON, and the form is posted. Nothing else runs on the pages.
"use strict";
(function () {
  const b64 = {
    decode(s) {
      s = s.replace(/-/g, "+").replace(/_/g, "/");
      while (s.length % 4) s += "=";
      const bin = atob(s);
      const out = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out.buffer;
    },
    encode(buf) {
      const bytes = new Uint8Array(buf);
      let bin = "";
      for (const x of bytes) bin += String.fromCharCode(x);
      return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    },
  };

  function creationOptions(o) {
    const pk = Object.assign({}, o.publicKey);
    pk.challenge = b64.decode(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: b64.decode(pk.user.id) });
    pk.excludeCredentials = (pk.excludeCredentials || []).map((c) => Object.assign({}, c, { id: b64.decode(c.id) }));
    return { publicKey: pk };
  }

  function requestOptions(o) {
    const pk = Object.assign({}, o.publicKey);
    pk.challenge = b64.decode(pk.challenge);
    pk.allowCredentials = (pk.allowCredentials || []).map((c) => Object.assign({}, c, { id: b64.decode(c.id) }));
    return { publicKey: pk };
  }

  function answer(cred) {
    const r = cred.response;
    const out = {
      id: cred.id,
      rawId: b64.encode(cred.rawId),
      type: cred.type,
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: { clientDataJSON: b64.encode(r.clientDataJSON) },
    };
    if (r.attestationObject) {
      out.response.attestationObject = b64.encode(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = b64.encode(r.authenticatorData);
      out.response.signature = b64.encode(r.signature);
      out.response.userHandle = r.userHandle ? b64.encode(r.userHandle) : null;
    }
    return JSON.stringify(out);
  }

  function say(form, text) {
    const el = form.querySelector("[data-passkey-status]");
    if (el) el.textContent = text;
  }

  async function run(form) {
    if (!window.PublicKeyCredential) {
      say(form, "This browser does not support passkeys.");
      return;
    }
    const options = JSON.parse(form.dataset.options);
    try {
      const cred = form.dataset.passkey === "create"
        ? await navigator.credentials.create(creationOptions(options))
        : await navigator.credentials.get(requestOptions(options));
      form.elements.credential.value = answer(cred);
      form.submit();
    } catch (e) {
      say(form, e && e.name === "NotAllowedError"
        ? "The passkey request was cancelled or timed out. Try again."
        : "The passkey could not be used: " + (e && e.message ? e.message : e));
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const form of document.querySelectorAll("form[data-passkey]")) {
      form.addEventListener("submit", (ev) => {
        if (form.elements.credential.value) return;
        ev.preventDefault();
        if (form.reportValidity()) run(form);
      });
      if (form.dataset.autostart !== undefined) run(form);
    }
  });
})();
