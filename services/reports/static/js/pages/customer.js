// One customer: figures and RFM ranks, every segment change with its cause, every purchase,
// and their follow-up tasks.
import { getJSON, notifier, query } from "../api.js";
import { day, num, yen } from "../fmt.js";
import { segmentName, t } from "../i18n.js";
import { card, el, message, table } from "../ui.js";
import { ctx } from "../app.js";

export async function render({ scope, arg }) {
  let body;
  try {
    body = await getJSON(`/v1/dashboard/customers/${encodeURIComponent(arg)}${query({ scope })}`);
  } catch (e) {
    if (e.status === 404) return card(`${t("customer")} ${arg}`, message(t("not_found"), "error"));
    throw e;
  }
  const tasks = ctx.may("followups") ? await getJSON(notifier(`/v1/customers/${encodeURIComponent(arg)}/followups`)) : { items: [] };
  const c = body.customer;
  const kv = (pairs) => el("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const open = tasks.items.filter((x) => x.status === "open");
  return el("div", { class: "grid two" },
    card(`${t("customer")} ${c.customer_id}`, kv([
      [t("segment"), el("strong", { id: "customer-segment", dataset: { segment: c.segment || "" } }, segmentName(c.segment))],
      [t("total_amount"), yen(c.total_amount)],
      [t("purchase_count"), num(c.purchase_count)],
      [t("first_purchase_on"), day(c.first_purchase_on)],
      [t("last_purchase_on"), day(c.last_purchase_on)],
      [t("tenure_days"), num(c.tenure_days)],
      [t("lapse_days"), num(c.lapse_days)],
      [t("branch"), c.home_branch_id || "—"],
      ["RFM", c.r ? `R${c.r} F${c.f} M${c.m}` : "—"],
      ...(c.customer_name ? [[t("name"), c.customer_name]] : []),
    ])),
    card(t("open_tasks"), open.length ? table([
      { label: t("reason"), value: (x) => t(`reason_${x.reason}`) },
      { label: t("segment"), value: (x) => segmentName(x.segment) },
      { label: t("due_on"), value: (x) => day(x.due_on) },
      { label: t("note"), value: (x) => x.note || "" },
    ], open) : message(t("nothing"))),
    card(t("changes"), table([
      { label: t("date"), value: (x) => day(x.effective_on) },
      { label: t("segment"), value: (x) => `${x.from_segment ? `${segmentName(x.from_segment)} → ` : ""}${segmentName(x.to_segment)}` },
      { label: t("cause"), value: (x) => t(`cause_${x.cause}`) },
      { label: t("purchase_count"), value: (x) => num(x.purchase_count), num: true },
      { label: t("total_amount"), value: (x) => yen(x.total_amount), num: true },
    ], body.changes, { class: "changes" })),
    card(t("purchases"), table([
      { label: t("date"), value: (p) => day(p.occurred_on) },
      { label: t("kind"), value: (p) => t(`cause_${p.kind === "sale" ? "purchase" : p.kind}`) },
      { label: t("amount"), value: (p) => yen(p.amount), num: true },
      { label: t("branch"), value: (p) => p.branch_id },
      { label: "", value: (p) => (p.lines || []).map((l) => l.name || l.sku).filter(Boolean).join(", ") },
    ], body.purchases, { class: "purchases" })));
}
