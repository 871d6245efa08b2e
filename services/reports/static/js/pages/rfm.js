// RFM: the R×F table, totals per rank, the tenant's rank borders, and a customer list by ranks
// with its CSV.
import { getJSON, query } from "../api.js";
import { num, yen } from "../fmt.js";
import { t } from "../i18n.js";
import { card, chart, el, table } from "../ui.js";

export async function render({ scope }) {
  const body = await getJSON(`/v1/rfm${query({ scope })}`);
  const rf = body.rf_table.customers;
  const ranks = [5, 4, 3, 2, 1];
  const heat = (n) => `background: hsla(350, 65%, 50%, ${Math.min(0.85, n / Math.max(1, body.customers) * 6).toFixed(2)})`;
  const rfTable = el("div", { class: "scroll" }, el("table", { class: "rf" },
    el("thead", {}, el("tr", {}, el("th", {}, "R \\ F"), ranks.map((f) => el("th", { class: "num" }, `F${f}`)))),
    el("tbody", {}, rf.map((row, i) => el("tr", {}, el("th", {}, `R${ranks[i]}`),
      row.map((n, j) => el("td", { class: "num", style: heat(n) },
        el("a", { href: `/v1/rfm/customers${query({ scope, r_min: ranks[i], r_max: ranks[i], f_min: ranks[j], f_max: ranks[j], format: "csv" })}`, download: "" }, num(n)))))))));
  const bars = (key, label) => chart({
    type: "bar",
    data: { labels: ranks.map((r) => `${key.toUpperCase()}${r}`), datasets: [{ label: t("customers_n"), data: ranks.map((r) => body.by_rank[key][r] || 0), backgroundColor: "#7a9cc6" }] },
    options: { plugins: { legend: { display: false }, title: { display: true, text: label } } },
  }, { height: 200, label });
  const th = body.thresholds;
  return el("div", { class: "grid two" },
    card(`${t("rf_table")} (${num(body.customers)})`, rfTable, el("p", { class: "muted" }, "CSV: R×F")),
    card(t("thresholds"), table([
      { label: "", value: (r) => r[0] },
      { label: "1|2", value: (r) => r[1][0], num: true }, { label: "2|3", value: (r) => r[1][1], num: true },
      { label: "3|4", value: (r) => r[1][2], num: true }, { label: "4|5", value: (r) => r[1][3], num: true },
    ], [[t("recency"), th.recency_days.map(num)], [t("frequency"), th.frequency.map(num)], [t("monetary"), th.monetary.map(yen)]])),
    card(t("recency"), bars("r", t("recency"))),
    card(t("frequency"), bars("f", t("frequency"))),
    card(t("monetary"), bars("m", t("monetary"))));
}
