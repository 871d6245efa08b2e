// Rules: the tenant's borders with the distribution of repurchase gaps and of totals drawn
// beneath, a setting suggested from the data, and a preview of how many customers would move
// between segments before saving.
import { getJSON, query, sendJSON } from "../api.js";
import { num, yen } from "../fmt.js";
import { segmentName, t } from "../i18n.js";
import { card, chart, el, message, table } from "../ui.js";
import { ctx } from "../app.js";

const FIELDS = [["amount_border", "amount_border"], ["fledgling_tenure_days", "fledgling_tenure_days"], ["loyal_tenure_days", "loyal_tenure_days"], ["lapse_days", "lapse_days_rule"]];

function histogram(buckets, border, title, money) {
  const label = (b) => (b.to === null ? `${money ? yen(b.from) : num(b.from)}+` : `${money ? yen(b.from) : num(b.from)}–`);
  return chart({
    type: "bar",
    data: {
      labels: buckets.map(label),
      datasets: [{ label: t("customers_n"), data: buckets.map((b) => b.count), backgroundColor: buckets.map((b) => (b.from >= border ? "#b3363c" : "#7a9cc6")) }],
    },
    options: { plugins: { legend: { display: false }, title: { display: true, text: `${title} — ${money ? yen(border) : num(border)}` } }, scales: { x: { ticks: { maxRotation: 60, font: { size: 10 } } } } },
  }, { height: 240, label: title });
}

function readForm(form, base) {
  const rules = { ...base };
  for (const [name] of FIELDS) {
    const v = form.elements[name].value.trim();
    rules[name] = name === "amount_border" ? v : Number(v);
  }
  return rules;
}

export async function render({ scope }) {
  const [current, dist, suggestion] = await Promise.all([
    getJSON("/v1/rules"),
    getJSON(`/v1/rules/distribution${query({ scope })}`),
    getJSON(`/v1/rules/suggestion${query({ scope })}`),
  ]);
  const status = el("div", { id: "rules-status" });
  const previewBox = el("div", { id: "preview" });
  const form = el("form", { class: "fields", id: "rules-form", onsubmit: (e) => e.preventDefault() },
    FIELDS.map(([name, label]) => el("label", {}, t(label), el("input", { name, inputmode: "numeric", value: current.rules[name], required: true }))));

  async function preview() {
    try {
      const body = await sendJSON(`/v1/rules/preview${query({ scope })}`, "POST", readForm(form, current.rules));
      previewBox.replaceChildren(
        el("p", { id: "preview-moving", dataset: { moving: body.moving } }, `${t("moving")}: ${num(body.moving)} / ${num(body.customers)}`),
        body.moves.length ? table([
          { label: t("from"), value: (m) => segmentName(m.from) },
          { label: t("to"), value: (m) => segmentName(m.to) },
          { label: t("customers_n"), value: (m) => num(m.customers), num: true },
        ], body.moves, { class: "moves", rowAttrs: (m) => ({ dataset: { from: m.from, to: m.to, customers: m.customers } }) }) : message(t("nothing")));
    } catch (err) { previewBox.replaceChildren(message(err.message, "error")); }
  }

  async function save() {
    try {
      const saved = await sendJSON("/v1/rules", "PUT", readForm(form, current.rules));
      status.replaceChildren(message(`${t("saved")} (${t("version")} ${saved.version}) — ${t("applying")}`, "ok"));
      status.dataset.version = saved.version;
    } catch (err) { status.replaceChildren(message(err.message, "error")); }
  }

  const basis = suggestion.basis.map((b) => `${t(FIELDS.find(([n]) => n === b.field)[1])} ← ${t(`basis_${b.basis}`)}: ${b.field === "amount_border" ? yen(b.value) : num(b.value)}`);
  return el("div", { class: "grid two" },
    card(t("borders"),
      el("p", { class: "muted", id: "rules-version", dataset: { version: current.version, applied: current.applied_version } },
        `${t("version")} ${current.version} · ${current.applied_version === current.version ? t("applied") : t("applying")}`),
      form,
      el("div", { class: "row" },
        el("button", { type: "button", class: "secondary", id: "preview-button", onclick: preview }, t("preview")),
        ctx.may("settings") ? el("button", { type: "button", id: "save-rules", onclick: save }, t("save")) : el("span", { class: "muted" }, `${t("save")}: ${t("owners_only")}`)),
      previewBox, status),
    card(t("suggestion"),
      el("dl", { class: "kv" }, FIELDS.flatMap(([name, label]) => [el("dt", {}, t(label)), el("dd", { dataset: { field: name } }, name === "amount_border" ? yen(suggestion.rules[name]) : num(suggestion.rules[name]))])),
      el("ul", { class: "muted" }, basis.map((b) => el("li", {}, b))),
      ctx.may("settings") && el("button", { type: "button", class: "secondary", id: "use-suggestion", onclick: () => {
        for (const [name] of FIELDS) form.elements[name].value = suggestion.rules[name];
        preview();
      } }, t("use_suggestion"))),
    card(t("gaps"), histogram(dist.repurchase_gaps, current.rules.lapse_days, t("lapse_days_rule"), false)),
    card(t("totals_dist"), histogram(dist.totals, Number(current.rules.amount_border), t("amount_border"), true)));
}
