// LTV simulation: the baseline projection from the measured monthly rates, and a scenario
// with one rate changed, side by side with the difference.
import { api, getJSON, query } from "../api.js";
import { num, pct, yen } from "../fmt.js";
import { SEGMENTS, segmentName, t } from "../i18n.js";
import { card, el, message, table } from "../ui.js";

function projection(body) {
  const rows = body.baseline.map((b, i) => ({ b, s: body.scenario ? body.scenario[i] : null, d: body.difference ? body.difference[i] : null }));
  return table([
    { label: t("months_later"), value: (r) => `${r.b.months}` },
    { label: `${t("baseline")} ${t("customers_n")}`, value: (r) => num(r.b.total_customers), num: true },
    { label: `${t("baseline")} ${t("sales")}`, value: (r) => yen(r.b.cumulative_sales), num: true },
    ...(body.scenario ? [
      { label: `${t("scenario")} ${t("customers_n")}`, value: (r) => num(r.s.total_customers), num: true },
      { label: `${t("scenario")} ${t("sales")}`, value: (r) => yen(r.s.cumulative_sales), num: true },
      { label: t("difference"), value: (r) => yen(r.d.cumulative_sales), num: true, cls: () => "highlight" },
    ] : []),
  ], rows, { class: "projection" });
}

export async function render({ scope }) {
  const baseline = await getJSON(`/v1/ltv${query({ scope })}`);
  const result = el("div", { id: "ltv-result" }, projection(baseline));
  const from = el("select", { name: "from", "aria-label": t("from") }, SEGMENTS.map((s) => el("option", { value: s, selected: s === "first_active" }, segmentName(s))));
  const to = el("select", { name: "to", "aria-label": t("to") }, SEGMENTS.map((s) => el("option", { value: s, selected: s === "fledgling_active" }, segmentName(s))));
  const rateInput = el("input", { name: "rate", type: "number", min: 0, max: 100, step: 0.1, style: "width:6em", "aria-label": t("rate") });
  const measured = () => {
    const r = (baseline.rates[from.value] || {})[to.value] || 0;
    rateInput.value = (r * 100).toFixed(1);
    note.textContent = `${t("baseline")}: ${pct(r)}`;
  };
  const note = el("span", { class: "muted" });
  from.addEventListener("change", measured);
  to.addEventListener("change", measured);
  measured();
  const form = el("form", { class: "row", id: "ltv-form", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const response = await api(`/v1/ltv/simulations${query({ scope })}`, { method: "POST", json: { changes: [{ from: from.value, to: to.value, rate: Number(rateInput.value) / 100 }] } });
      result.replaceChildren(projection(await response.json()));
    } catch (err) { result.replaceChildren(message(err.message, "error")); }
  } }, from, el("span", {}, "→"), to, el("label", {}, `${t("rate")} (%)`, rateInput), note, el("button", { type: "submit" }, t("simulate")));
  return el("div", { class: "grid" },
    card(`${t("change_rate")} — ${t("baseline")}: ${baseline.window.from} – ${baseline.window.to}`, form, result));
}
