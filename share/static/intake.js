// The request form's proof of work: find the number whose SHA-256 (with the salt) is the
// challenge, then send it with the form. Starts when the page loads; the form waits for it
// only if it is not done yet, showing a short "verifying" state.
(function () {
  "use strict";
  var form = document.getElementById("request-form");
  if (!form || !window.crypto || !window.crypto.subtle || !window.TextEncoder) { return; }
  var field = document.getElementById("field-altcha");
  var status = document.getElementById("verify-status");
  var challenge;
  try { challenge = JSON.parse(form.getAttribute("data-challenge") || ""); } catch (e) { return; }
  var encoder = new TextEncoder();
  var waiting = false;

  function hex(buffer) {
    var bytes = new Uint8Array(buffer), out = "";
    for (var i = 0; i < bytes.length; i++) { out += ("0" + bytes[i].toString(16)).slice(-2); }
    return out;
  }

  async function solve() {
    var started = Date.now();
    for (var n = 0; n <= challenge.maxnumber; n++) {
      var digest = await crypto.subtle.digest("SHA-256", encoder.encode(challenge.salt + n));
      if (hex(digest) === challenge.challenge) {
        return btoa(JSON.stringify({algorithm: challenge.algorithm, challenge: challenge.challenge,
          number: n, salt: challenge.salt, signature: challenge.signature, took: Date.now() - started}));
      }
    }
    return "";
  }

  var solving = solve().then(function (payload) {
    field.value = payload;
    if (waiting) { status.textContent = ""; form.submit(); }
  });

  form.addEventListener("submit", function (event) {
    if (field.value) { return; }
    event.preventDefault();
    waiting = true;
    status.textContent = form.getAttribute("data-verifying");
    solving.then(function () { if (!field.value) { form.submit(); } });
  });
}());
