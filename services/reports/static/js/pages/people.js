// Owners: the people who log in and the systems' API keys (a new password or key is shown
// once), and the audit log of who took lists of customers out.
import { api, getJSON, query, sendJSON } from "../api.js";
import { day, num } from "../fmt.js";
import { t } from "../i18n.js";
import { card, el, message, table } from "../ui.js";
import { ctx } from "../app.js";

const PERSON_ROLES = ["owner", "manager", "staff"];
const KEY_ROLES = ["ingest", "read", "admin"];
const branchesOf = (text) => text.split(",").map((b) => b.trim()).filter(Boolean);

function shownOnce(label, value, id) {
  return el("div", { class: "message ok", id }, `${label}: `, el("code", { class: "secret" }, value), el("div", { class: "muted" }, t("shown_once")));
}

function peopleCard(people) {
  const status = el("div", { id: "people-status" });
  const form = el("form", { class: "row", id: "new-person", onsubmit: async (e) => {
    e.preventDefault();
    const f = e.target.elements;
    try {
      const made = await sendJSON("/v1/people", "POST", { email: f.email.value.trim(), role: f.role.value, branches: branchesOf(f.branches.value) });
      await ctx.reload();
      document.getElementById("people-status").replaceChildren(shownOnce(`${made.email} ${t("password")}`, made.password, "new-password"));
    } catch (err) { status.replaceChildren(message(err.message, "error")); }
  } },
  el("input", { name: "email", type: "email", placeholder: "email", "aria-label": "email", required: true }),
  el("select", { name: "role", "aria-label": t("role") }, PERSON_ROLES.map((r) => el("option", { value: r }, t(`role_${r}`)))),
  el("input", { name: "branches", placeholder: t("branches_hint"), "aria-label": t("branch") }),
  el("button", { type: "submit" }, t("add")));
  const toggle = (p) => el("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      await sendJSON(`/v1/people/${encodeURIComponent(p.email)}`, "PATCH", { enabled: Boolean(p.disabled_at) });
      ctx.reload();
    } catch (err) { status.replaceChildren(message(err.message, "error")); }
  } }, p.disabled_at ? t("enable") : t("disable"));
  return card(t("people"), table([
    { label: "email", value: (p) => p.email },
    { label: t("role"), value: (p) => t(`role_${p.role}`) },
    { label: t("branch"), value: (p) => (p.branches.length ? p.branches.join(", ") : t("chain")) },
    { label: t("status"), value: (p) => (p.disabled_at ? `${t("disabled")} ${day(p.disabled_at)}` : t("active")) },
    { label: "", value: toggle },
  ], people.items, { class: "people", rowAttrs: (p) => ({ dataset: { email: p.email } }) }), form, status);
}

function keysCard(keys) {
  const status = el("div", { id: "keys-status" });
  const form = el("form", { class: "row", id: "new-key", onsubmit: async (e) => {
    e.preventDefault();
    const f = e.target.elements;
    try {
      const made = await sendJSON("/v1/keys", "POST", { role: f.role.value, name: f.name.value.trim() || null, branches: branchesOf(f.branches.value) });
      await ctx.reload();
      document.getElementById("keys-status").replaceChildren(shownOnce(made.key_id, made.key, "new-key-value"));
    } catch (err) { status.replaceChildren(message(err.message, "error")); }
  } },
  el("input", { name: "name", placeholder: t("name"), "aria-label": t("name") }),
  el("select", { name: "role", "aria-label": t("role") }, KEY_ROLES.map((r) => el("option", { value: r }, r))),
  el("input", { name: "branches", placeholder: t("branches_hint"), "aria-label": t("branch") }),
  el("button", { type: "submit" }, t("add")));
  const revoke = (k) => (k.revoked_at ? `${t("revoked")} ${day(k.revoked_at)}` : el("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      await api(`/v1/keys/${encodeURIComponent(k.key_id)}`, { method: "DELETE" });
      ctx.reload();
    } catch (err) { status.replaceChildren(message(err.message, "error")); }
  } }, t("revoke")));
  return card(t("api_keys"), table([
    { label: "id", value: (k) => k.key_id },
    { label: t("name"), value: (k) => k.name },
    { label: t("role"), value: (k) => k.role },
    { label: t("branch"), value: (k) => (k.branches.length ? k.branches.join(", ") : t("chain")) },
    { label: t("last_used"), value: (k) => day(k.last_used_at) },
    { label: "", value: revoke },
  ], keys.items, { class: "keys", rowAttrs: (k) => ({ dataset: { key: k.key_id } }) }), form, status);
}

function auditCard(audit) {
  return card(t("audit_log"), table([
    { label: t("date"), value: (r) => `${day(r.at)} ${r.at.slice(11, 16)}` },
    { label: t("who"), value: (r) => r.actor },
    { label: t("kind"), value: (r) => r.action },
    { label: t("list"), value: (r) => r.subject },
    { label: t("rows"), value: (r) => num(r.rows), num: true },
    { label: t("format"), value: (r) => r.format || "" },
  ], audit.items, { class: "audit" }),
  el("div", { class: "row" }, el("a", { class: "button", href: `/v1/audit${query({ format: "csv" })}`, download: "" }, "CSV")));
}

export async function render() {
  const [people, keys, audit] = await Promise.all([getJSON("/v1/people"), getJSON("/v1/keys"), getJSON("/v1/audit?limit=50")]);
  return el("div", { class: "grid" }, peopleCard(people), keysCard(keys), auditCard(audit));
}
