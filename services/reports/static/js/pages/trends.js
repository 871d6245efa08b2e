// Trends: customers and sales per segment over time (monthly over years, or daily), the
// monthly transition table with the headline rates and the 初回→よちよち target, the
// six-month view, and the branches side by side.
import { getJSON, query, sendJSON } from "../api.js";
import { addMonths, month, num, parseMonth, pct, yen } from "../fmt.js";
import { SEGMENTS, TIERS, segmentName, t } from "../i18n.js";
import { card, chart, el, message, segmentColor, table } from "../ui.js";
import { ctx } from "../app.js";

function lines(history, key, title, money) {
  return chart({
    type: "line",
    data: {
      labels: history.periods.map((p) => (p.length > 7 ? p.slice(5).replace("-", "/") : month(p))),
      datasets: SEGMENTS.map((s) => {
        const seg = history.segments.find((x) => x.segment === s);
        return { label: segmentName(s), data: seg[key].map(Number), borderColor: segmentColor(s), backgroundColor: segmentColor(s, 0.5), pointRadius: 0, borderWidth: 2, fill: true };
      }),
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: { y: { stacked: true, ticks: { callback: (v) => (money ? yen(v) : num(v)) } }, x: { ticks: { maxRotation: 0, autoSkipPadding: 12 } } },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 10, font: { size: 11 } } }, title: { display: true, text: title } },
    },
  }, { height: 340, label: title });
}

function rateChart(months, target) {
  const labels = months.map((m) => month(m.month));
  return chart({
    type: "line",
    data: {
      labels,
      datasets: [
        { label: t("first_to_fledgling"), data: months.map((m) => (m.headline.first_to_fledgling.rate ?? null)), borderColor: "#1f5fa8", backgroundColor: "#1f5fa8" },
        { label: `${t("target")} ${pct(target, 0)}`, data: months.map(() => target), borderColor: "#b3363c", borderDash: [6, 4], pointRadius: 0 },
      ],
    },
    options: { scales: { y: { min: 0, ticks: { callback: (v) => pct(v, 0) } } }, plugins: { legend: { position: "bottom" } } },
  }, { height: 240, label: t("first_to_fledgling") });
}

function headlineTable(months, target) {
  const rate = (h) => (h ? `${pct(h.rate)} (${num(h.customers)}/${num(h.base)})` : "—");
  return table([
    { label: t("month"), value: (m) => month(m.month) },
    { label: t("new_in_month"), value: (m) => num(m.headline.new), num: true },
    { label: t("first_to_fledgling"), value: (m) => rate(m.headline.first_to_fledgling), num: true,
      cls: (m) => `highlight ${m.headline.first_to_fledgling.rate === null ? "" : m.headline.first_to_fledgling.rate >= target ? "above" : "below"}` },
    ...TIERS.map((tier) => ({ label: `${t(tier)} ${t("active_to_lapsed")}`, value: (m) => rate(m.headline.active_to_lapsed[tier]), num: true })),
    { label: t("comebacks"), value: (m) => rate(m.headline.comebacks.total), num: true },
  ], months, { class: "headline" });
}

function monthMatrix(m) {
  const rows = ["new", ...SEGMENTS].filter((f) => m.cells.some((c) => c.from === f));
  const cell = (f, to) => m.cells.find((c) => c.from === f && c.to === to);
  return table([
    { label: `${t("from")} \\ ${t("to")}`, value: (f) => segmentName(f) },
    ...SEGMENTS.map((to) => ({ label: segmentName(to), num: true, value: (f) => {
      const c = cell(f, to);
      return c ? `${num(c.customers)}${c.rate === null ? "" : ` (${pct(c.rate)})`}` : "";
    } })),
  ], rows);
}

function sixMonth(m) {
  if (!m.six_month) return message(t("nothing"));
  return el("div", {}, el("p", { class: "muted" }, `${month(m.six_month.snapshot)} → ${month(m.month)}`),
    table([
      { label: t("tier"), value: (r) => t(r.tier) },
      { label: t("base"), value: (r) => num(r.base), num: true },
      { label: t("reached"), value: (r) => num(r.reached), num: true },
      { label: t("rate"), value: (r) => pct(r.rate), num: true },
    ], m.six_month.tiers));
}

async function branches(scopes) {
  const shown = scopes.filter((s) => s !== "all");
  if (!shown.length) return message(t("nothing"));
  const all = await Promise.all(shown.map((s) => getJSON(`/v1/portfolio${query({ scope: s })}`)));
  const rows = SEGMENTS.map((seg) => ({ seg, values: all.map((p) => p.segments.find((x) => x.segment === seg)) }));
  return el("div", {},
    chart({
      type: "bar",
      data: { labels: shown, datasets: SEGMENTS.map((s, i) => ({ label: segmentName(s), data: rows[i].values.map((v) => v.customers), backgroundColor: segmentColor(s) })) },
      options: { scales: { x: { stacked: true }, y: { stacked: true } }, plugins: { legend: { position: "bottom", labels: { boxWidth: 10, font: { size: 11 } } } } },
    }, { height: 320, label: t("branches_side") }),
    table([
      { label: t("segment"), value: (r) => segmentName(r.seg) },
      ...shown.map((s, i) => ({ label: s, num: true, value: (r) => `${num(r.values[i].customers)} (${pct(r.values[i].customer_share)})` })),
    ], rows));
}

export async function render({ scope, params, scopes }) {
  const granularity = params.get("granularity") === "day" ? "day" : "month";
  const thisMonth = new Date().toISOString().slice(0, 7);
  const from = params.get("from") || (granularity === "day" ? "" : addMonths(thisMonth, -36));
  const shownMonth = params.get("month");
  const [history, transitions, settings] = await Promise.all([
    getJSON(`/v1/portfolio/history${query({ scope, granularity, from: granularity === "month" ? from : undefined })}`),
    getJSON(`/v1/transitions${query({ scope })}`),
    getJSON("/v1/dashboard/settings"),
  ]);
  const target = Number(settings.first_to_fledgling_target);
  const months = transitions.months;
  const picked = months.find((m) => m.month === shownMonth) || months[months.length - 1];

  const switcher = el("div", { class: "row" },
    el("span", {}, t("granularity")),
    ...["month", "day"].map((g) => el("button", { type: "button", class: g === granularity ? "" : "secondary", "aria-pressed": String(g === granularity), onclick: () => ctx.go("trends", "", { granularity: g, from: null }) }, t(g === "month" ? "by_month" : "by_day"))),
    granularity === "month" ? el("form", { class: "row", onsubmit: (e) => {
      e.preventDefault();
      const input = e.target.elements.from;
      const iso = parseMonth(input.value);
      input.setCustomValidity(iso ? "" : t("bad_month"));
      if (!iso) return input.reportValidity();
      ctx.go("trends", "", { granularity: "month", from: iso });
    } }, el("label", {}, t("from"), el("input", { name: "from", value: month(from), size: 7, inputmode: "numeric" })), el("button", { type: "submit" }, t("apply"))) : null);

  const targetForm = ctx.isOwner() ? el("form", { class: "row", id: "target-form", onsubmit: async (e) => {
    e.preventDefault();
    const value = Number(e.target.elements.target.value) / 100;
    try {
      await sendJSON("/v1/dashboard/settings", "PUT", { first_to_fledgling_target: value });
      ctx.reload();
    } catch (err) { e.target.append(message(err.message, "error")); }
  } }, el("label", {}, `${t("target")} (%)`, el("input", { name: "target", type: "number", min: 1, max: 100, step: 1, value: Math.round(target * 100), style: "width:6em" })), el("button", { type: "submit" }, t("save"))) : null;

  const monthPicker = el("select", { "aria-label": t("month"), onchange: (e) => ctx.go("trends", "", { month: e.target.value }) },
    months.map((m) => el("option", { value: m.month, selected: m === picked }, month(m.month))));

  return el("div", { class: "grid" },
    card(t("counts_over_time"), switcher, lines(history, "customers", t("counts_over_time"), false)),
    card(t("sales_over_time"), lines(history, "sales", t("sales_over_time"), true)),
    card(t("transitions"), targetForm, rateChart(months, target), headlineTable(months, target)),
    el("div", { class: "grid two" },
      card(t("transition_table"), el("div", { class: "row" }, monthPicker), monthMatrix(picked)),
      card(t("six_month"), sixMonth(picked))),
    card(t("branches_side"), await branches(scopes)));
}
