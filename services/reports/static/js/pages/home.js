// Home: the 5×2 portfolio matrix with both shares, the two pie charts and the day's news.
import { getJSON, notifier, query } from "../api.js";
import { day, num, pct, yen } from "../fmt.js";
import { STATES, TIERS, segmentName, t } from "../i18n.js";
import { card, customerLink, donut, el, segmentColor, table } from "../ui.js";

function matrix(portfolio, scope) {
  const by = Object.fromEntries(portfolio.segments.map((s) => [s.segment, s]));
  const cells = [el("div", { class: "head" }, t("tier")), ...STATES.map((s) => el("div", { class: "head" }, t(s)))];
  for (const tier of TIERS) {
    cells.push(el("div", { class: "tier" }, t(tier)));
    for (const state of STATES) {
      const seg = `${tier}_${state}`;
      const s = by[seg];
      cells.push(el("a", {
        class: "cell", href: `#/customers/${seg}?scope=${encodeURIComponent(scope)}`,
        style: `background:${segmentColor(seg, 0.18)}; border-left: 4px solid ${segmentColor(seg)}`,
        dataset: { segment: seg, customers: s.customers, sales: s.sales, customerShare: s.customer_share, salesShare: s.sales_share },
      },
      el("div", { class: "customers" }, num(s.customers)),
      el("div", { class: "line" }, el("span", {}, t("customer_share")), el("span", {}, pct(s.customer_share))),
      el("div", { class: "line" }, el("span", {}, t("sales")), el("span", {}, yen(s.sales))),
      el("div", { class: "line" }, el("span", {}, t("sales_share")), el("span", {}, pct(s.sales_share)))));
    }
  }
  cells.push(el("div", { class: "totals", id: "totals", dataset: { customers: portfolio.total_customers, sales: portfolio.total_sales } },
    `${t("total")}: ${num(portfolio.total_customers)} / ${yen(portfolio.total_sales)} — ${t("as_of")} ${day(portfolio.as_of)}`));
  return el("div", { class: "matrix", id: "matrix" }, cells);
}

function newsCard(news, atRisk, scope) {
  const stats = el("div", { class: "stats" },
    ["new_customers", "comebacks", "newly_lapsed"].map((k) =>
      el("div", { class: "stat", dataset: { news: k, count: news[k].count } }, el("span", { class: "muted" }, t(k)), el("span", { class: "value" }, num(news[k].count)))),
    el("div", { class: "stat", dataset: { news: "at_risk", count: atRisk.items.length } },
      el("span", { class: "muted" }, t("at_risk")), el("span", { class: "value" }, atRisk.next ? `${num(atRisk.items.length)}+` : num(atRisk.items.length))));
  const lists = ["newly_lapsed", "comebacks", "new_customers"].filter((k) => news[k].items.length).map((k) =>
    el("div", {}, el("h3", {}, t(k)), table([
      { label: t("customer_id"), value: (r) => customerLink(r.customer_id, scope) },
      { label: t("segment"), value: (r) => `${r.from_segment ? `${segmentName(r.from_segment)} → ` : ""}${segmentName(r.to_segment)}` },
      { label: t("total_amount"), value: (r) => yen(r.total_amount), num: true },
    ], news[k].items.slice(0, 5))));
  return card(`${t("news")} — ${day(news.as_of)}`, stats, ...lists);
}

export async function render({ scope, asOf }) {
  const q = query({ scope, as_of: asOf });
  const [portfolio, news, atRisk] = await Promise.all([
    getJSON(`/v1/portfolio${q}`),
    getJSON(`/v1/dashboard/news${q}`),
    getJSON(notifier(`/v1/followups${query({ scope, reason: "at_risk", limit: 100 })}`)),
  ]);
  document.getElementById("as-of").placeholder = day(portfolio.as_of);
  const shares = (key) => Object.fromEntries(portfolio.segments.map((s) => [s.segment, Number(s[key])]));
  return el("div", { class: "grid wide-left" },
    card(`${t("matrix")} — ${scope === "all" ? t("chain") : scope}`, matrix(portfolio, scope)),
    el("div", { class: "grid two" },
      card(t("customer_share"), donut(t("customer_share"), shares("customers"))),
      card(t("sales_share"), donut(t("sales_share"), shares("sales")))),
    newsCard(news, atRisk, scope));
}
