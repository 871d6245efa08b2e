// The owner's questions for a month: sales from first-time vs repeat customers, dormant
// customers, who bought this month, last quarter's newcomers who came back, best customers.
import { getJSON, query } from "../api.js";
import { day, num, pct, yen } from "../fmt.js";
import { segmentName, t } from "../i18n.js";
import { card, customerLink, el, table } from "../ui.js";

export async function render({ scope }) {
  const q = await getJSON(`/v1/questions${query({ scope })}`);
  const kv = (pairs) => el("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  return el("div", { class: "grid two" },
    card(`① ② ${t("q_sales_split")} — ${q.month.replace("-", "/")}`, kv([
      [t("total"), yen(q.sales_split.total_sales)],
      [t("first"), `${yen(q.sales_split.first_time.sales)} (${pct(q.sales_split.first_time.share)})`],
      [t("steady"), `${yen(q.sales_split.repeat.sales)} (${pct(q.sales_split.repeat.share)})`],
    ])),
    card(`④ ${t("q_bought")}`, kv([
      [t("customers_n"), `${num(q.bought_this_month.buyers)} / ${num(q.bought_this_month.customers)} (${pct(q.bought_this_month.share)})`],
      [t("active"), pct(q.bought_this_month.share_of_active)],
    ])),
    card(`⑤ ${t("q_came_back")} (${q.new_customers_came_back.quarter})`, kv([
      [t("new_customers"), num(q.new_customers_came_back.new_customers)],
      [t("comebacks"), `${num(q.new_customers_came_back.came_back)} (${pct(q.new_customers_came_back.rate)})`],
    ])),
    card(`③ ${t("q_dormant")} (${num(q.dormant_60_90_days.customers)})`, table([
      { label: t("customer_id"), value: (r) => customerLink(r.customer_id, scope) },
      { label: t("segment"), value: (r) => segmentName(r.segment) },
      { label: t("last_purchase_on"), value: (r) => day(r.last_purchase_on) },
      { label: t("total_amount"), value: (r) => yen(r.total_amount), num: true },
    ], q.dormant_60_90_days.items.slice(0, 10))),
    card(`⑥ ⑦ ⑧ ${t("q_vips")}`, table([
      { label: t("customer_id"), value: (r) => customerLink(r.customer_id, scope) },
      { label: t("total_amount"), value: (r) => yen(r.total_amount), num: true },
      { label: t("purchase_count"), value: (r) => num(r.purchase_count), num: true },
      { label: "/年", value: (r) => num(r.purchases_per_year), num: true },
      { label: "", value: (r) => (r.top_products || []).slice(0, 3).map((p) => p.name || p.sku).join(", ") },
    ], q.vips.items.slice(0, 20))));
}
