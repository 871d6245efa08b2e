// The login page: POST /v1/session with e-mail and password; the session cookie comes back
// (HttpOnly), then on to the page that sent us here (?next=, same site only) or the dashboard.
"use strict";

const MESSAGES = {
  401: "メールアドレスまたはパスワードが違います / The e-mail or the password is wrong.",
  429: "ログインの失敗が続いたため、しばらくお待ちください / Too many failed logins: please wait and try again.",
};

function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  // Only a path on this site: never send a fresh login on to another origin.
  return next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

function show(text) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.hidden = !text;
}

async function logIn(event) {
  event.preventDefault();
  const button = document.getElementById("submit");
  button.disabled = true;
  show("");
  try {
    const response = await fetch("/v1/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({
        email: document.getElementById("email").value.trim(),
        password: document.getElementById("password").value,
      }),
    });
    if (response.ok) {
      location.assign(nextPage());
      return;
    }
    show(MESSAGES[response.status] || `ログインできません / Cannot log in (${response.status}).`);
  } catch (_) {
    show("サーバーに接続できません / The server cannot be reached.");
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").addEventListener("submit", logIn);
  document.getElementById("email").focus();
});
