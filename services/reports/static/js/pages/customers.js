// Customers: a segment's list (search by id, sort, pages counted on the server) with the CSV
// download in UTF-8 (BOM, for Excel) and Shift_JIS, as the API gives them.
import { getJSON, query } from "../api.js";
import { day, num, yen } from "../fmt.js";
import { SEGMENTS, segmentName, t } from "../i18n.js";
import { card, customerLink, el, table } from "../ui.js";
import { ctx } from "../app.js";

const SORTS = [["-total", "total_amount", "↓"], ["total", "total_amount", "↑"], ["-last", "last_purchase_on", "↓"], ["last", "last_purchase_on", "↑"], ["-count", "purchase_count", "↓"], ["count", "purchase_count", "↑"], ["id", "customer_id", ""]];
const SIZE = 50;

export async function render({ scope, arg, params }) {
  const segment = SEGMENTS.includes(arg) ? arg : "loyal_lapsed";
  const q = params.get("q") || "";
  const sort = SORTS.some(([k]) => k === params.get("sort")) ? params.get("sort") : "-total";
  const page = Math.max(1, Number(params.get("page")) || 1);
  const body = await getJSON(`/v1/dashboard/segments/${segment}/customers${query({ scope, q, sort, page, size: SIZE })}`);
  const pages = Math.max(1, Math.ceil(body.total / SIZE));
  const go = (changes) => ctx.go("customers", segment, { q, sort, page, ...changes });

  const picker = el("select", { id: "segment", "aria-label": t("segment"), onchange: (e) => ctx.go("customers", e.target.value, { q: null, sort: null, page: null }) },
    SEGMENTS.map((s) => el("option", { value: s, selected: s === segment }, segmentName(s))));
  const search = el("form", { class: "row", role: "search", onsubmit: (e) => { e.preventDefault(); go({ q: e.target.elements.q.value.trim() || null, page: 1 }); } },
    el("input", { name: "q", type: "search", value: q, placeholder: t("search_id"), "aria-label": t("search_id") }),
    el("button", { type: "submit" }, t("search")));
  const sorter = el("label", {}, t("sort"), el("select", { id: "sort", onchange: (e) => go({ sort: e.target.value, page: 1 }) },
    SORTS.map(([k, label, arrow]) => el("option", { value: k, selected: k === sort }, `${t(label)} ${arrow}`))));
  const csv = (encoding) => `/v1/segments/${segment}/customers${query({ scope, format: "csv", encoding })}`;
  const downloads = el("div", { class: "row" },
    el("a", { href: csv("utf-8"), download: "", id: "csv-utf8", class: "button" }, t("csv_utf8")),
    el("a", { href: csv("cp932"), download: "", id: "csv-sjis", class: "button" }, t("csv_sjis")));
  const pager = el("div", { class: "row pager" },
    el("button", { type: "button", class: "secondary", disabled: page <= 1, onclick: () => go({ page: page - 1 }) }, t("prev")),
    el("span", { id: "page-of" }, `${num(page)} / ${num(pages)}`),
    el("button", { type: "button", class: "secondary", disabled: page >= pages, onclick: () => go({ page: page + 1 }) }, t("next")),
    el("span", { class: "muted", id: "matched", dataset: { total: body.total } }, `${num(body.total)} ${t("matched")}`));

  return card(`${t("segment_list")} — ${segmentName(segment)}`,
    el("div", { class: "row" }, picker, sorter), search, downloads,
    table([
      { label: t("customer_id"), value: (r) => customerLink(r.customer_id, scope) },
      { label: t("total_amount"), value: (r) => yen(r.total_amount), num: true },
      { label: t("purchase_count"), value: (r) => num(r.purchase_count), num: true },
      { label: t("last_purchase_on"), value: (r) => day(r.last_purchase_on) },
      { label: t("lapse_days"), value: (r) => num(r.lapse_days), num: true },
      { label: t("branch"), value: (r) => r.home_branch_id || "—" },
    ], body.items, { class: "customers" }),
    pager);
}
