// Follow-ups: today's tasks for the login's branches, most valuable first, marked done with
// an outcome and a note; carried-over tasks marked; the at-risk list; the sequences and their
// steps; and (owners) the notification settings.
import { api, getJSON, notifier, query, sendJSON } from "../api.js";
import { day, num, yen } from "../fmt.js";
import { SEGMENTS, segmentName, t } from "../i18n.js";
import { card, customerLink, el, message, table } from "../ui.js";
import { ctx } from "../app.js";

const PAGE = 30;
const OUTCOMES = ["reached", "no_answer", "visited", "mailed", "declined", "other"];

function task(item, today, scope) {
  const carried = item.due_on < today;
  const form = el("form", { onsubmit: async (e) => {
    e.preventDefault();
    const f = e.target.elements;
    f.done.disabled = true;
    try {
      await api(notifier(`/v1/followups/${item.id}/done`), { method: "POST", json: { outcome: f.outcome.value || null, note: f.note.value.trim() || null } });
      node.remove();
      const left = document.querySelectorAll("#tasks .task").length;
      if (!left) document.getElementById("tasks").append(message(t("all_done"), "ok"));
    } catch (err) {
      f.done.disabled = false;
      form.append(message(err.message, "error"));
    }
  } },
  el("select", { name: "outcome", "aria-label": t("outcome") }, el("option", { value: "" }, `${t("outcome")}…`), OUTCOMES.map((o) => el("option", { value: o }, t(`outcome_${o}`)))),
  el("input", { name: "note", placeholder: t("note"), "aria-label": t("note"), maxlength: 2000 }),
  el("button", { type: "submit", name: "done" }, t("mark_done")));
  const node = el("article", { class: "task", dataset: { id: item.id, customer: item.customer_id, branch: item.branch_id || "" } },
    el("div", { class: "top" },
      customerLink(item.customer_id, scope),
      el("strong", {}, segmentName(item.segment)),
      el("span", {}, yen(item.total_amount)),
      el("span", { class: "muted" }, `${t(`reason_${item.reason}`)} · ${t("due_on")} ${day(item.due_on)}`),
      carried ? el("span", { class: "pill carried" }, t("carried_over")) : null,
      item.branch_id ? el("span", { class: "muted" }, item.branch_id) : null),
    item.note ? el("div", { class: "muted" }, item.note) : null,
    form);
  return node;
}

function sequenceEditor() {
  const example = { name: "アフターフォロー", steps: [{ offset_days: 3, channel: "post", template: "{name} 様へお礼状を郵送" }] };
  const area = el("textarea", { name: "sequence", "aria-label": t("sequences"), rows: 8 }, JSON.stringify(example, null, 2));
  const segment = el("select", { name: "segment", "aria-label": t("segment") }, SEGMENTS.map((s) => el("option", { value: s }, segmentName(s))));
  const status = el("div");
  return card(`${t("sequences")} — ${t("save")} (${t("owners_only")})`,
    el("form", { onsubmit: async (e) => {
      e.preventDefault();
      try {
        await sendJSON(notifier(`/v1/sequences/${segment.value}`), "PUT", JSON.parse(area.value));
        ctx.reload();
      } catch (err) { status.replaceChildren(message(err.message, "error")); }
    } }, el("div", { class: "row" }, segment), area, el("div", { class: "row" }, el("button", { type: "submit" }, t("save")))), status);
}

async function settingsCard() {
  const current = await getJSON(notifier("/v1/notifications/settings"));
  const area = el("textarea", { name: "settings", "aria-label": t("settings_json"), rows: 12 }, JSON.stringify(current.settings, null, 2));
  const status = el("div");
  return card(`${t("notification_settings")} (${t("owners_only")})`,
    el("p", { class: "muted" }, `${t("version")} ${current.version}`),
    el("form", { onsubmit: async (e) => {
      e.preventDefault();
      try {
        const saved = await sendJSON(notifier("/v1/notifications/settings"), "PUT", JSON.parse(area.value));
        status.replaceChildren(message(`${t("saved")} (${t("version")} ${saved.version})`, "ok"));
      } catch (err) { status.replaceChildren(message(err.message, "error")); }
    } }, area, el("div", { class: "row" }, el("button", { type: "submit" }, t("save")))), status);
}

export async function render({ scope }) {
  const [today, atRisk, sequences, dashboard] = await Promise.all([
    getJSON(notifier(`/v1/followups${query({ scope, due: "today", limit: PAGE })}`)),
    getJSON(notifier(`/v1/followups${query({ scope, reason: "at_risk", limit: 100 })}`)),
    ctx.may("reports") ? getJSON(notifier("/v1/sequences")) : null,
    getJSON("/v1/dashboard/settings"), // the tenant's today
  ]);
  const todayIso = dashboard.today;
  const list = el("div", { id: "tasks" }, today.items.length ? today.items.map((x) => task(x, todayIso, scope)) : message(t("all_done"), "ok"));
  // The next page of today's tasks, after the last one shown (the API's cursor).
  let cursor = today.next;
  const more = el("button", { type: "button", class: "secondary", id: "more-tasks", hidden: !cursor, onclick: async () => {
    const page = await getJSON(notifier(`/v1/followups${query({ scope, due: "today", limit: PAGE, cursor })}`));
    list.append(...page.items.map((x) => task(x, todayIso, scope)));
    cursor = page.next;
    more.hidden = !cursor;
  } }, t("more"));
  return el("div", { class: "grid wide-left" },
    card(t("todays_tasks"), list, more),
    el("div", { class: "grid" },
      card(t("at_risk"), atRisk.items.length ? table([
        { label: t("customer_id"), value: (x) => customerLink(x.customer_id, scope) },
        { label: t("segment"), value: (x) => segmentName(x.segment) },
        { label: t("total_amount"), value: (x) => yen(x.total_amount), num: true },
        { label: t("last_purchase_on"), value: (x) => day(x.last_purchase_on) },
      ], atRisk.items) : message(t("nothing"))),
      sequences && card(t("sequences"), sequences.items.length ? sequences.items.map((s) => el("div", {},
        el("h3", {}, segmentName(s.segment)),
        table([
          { label: t("offset_days"), value: (st) => num(st.offset_days), num: true },
          { label: t("channel"), value: (st) => st.channel },
          { label: t("note"), value: (st) => st.template || st.note || "" },
        ], s.steps || []))) : message(t("nothing"))),
      ctx.isOwner() ? sequenceEditor() : null,
      ctx.isOwner() ? await settingsCard() : null));
}
