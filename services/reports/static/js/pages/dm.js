// DM response tables (レスポンス推移表): per month and segment the segment's size on the
// mailing day, mails sent, responses and the response rate; new tables and months recorded here.
import { getJSON, query, sendJSON } from "../api.js";
import { day, month, num, parseDay, parseMonth, pct } from "../fmt.js";
import { SEGMENTS, segmentName, t } from "../i18n.js";
import { card, el, message, table } from "../ui.js";
import { ctx } from "../app.js";

function tableView(body, scope) {
  const rows = body.months.flatMap((m) => m.segments.map((s) => ({ ...s, month: m.month, sent_on: m.sent_on })));
  const status = el("div");
  const segment = el("select", { name: "segment", "aria-label": t("segment") }, SEGMENTS.map((s) => el("option", { value: s }, segmentName(s))));
  const form = el("form", { class: "row", id: "dm-month", onsubmit: async (e) => {
    e.preventDefault();
    const f = e.target.elements;
    const m = parseMonth(f.month.value);
    const sent = f.sent_on.value.trim() ? parseDay(f.sent_on.value) : null;
    if (!m || (f.sent_on.value.trim() && !sent)) return status.replaceChildren(message(!m ? t("bad_month") : t("bad_date"), "error"));
    try {
      const keep = (body.months.find((x) => x.month === m)?.segments || []).filter((s) => s.segment !== segment.value)
        .map((s) => ({ segment: s.segment, mailed: s.mailed, responses: s.responses }));
      await sendJSON(`/v1/dm-tables/${body.id}/months/${m}`, "PUT", { sent_on: sent, segments: [...keep, { segment: segment.value, mailed: Number(f.mailed.value), responses: Number(f.responses.value) }] });
      ctx.reload();
    } catch (err) { status.replaceChildren(message(err.message, "error")); }
  } },
  el("input", { name: "month", placeholder: "2026/11", size: 7, "aria-label": t("month"), required: true }),
  el("input", { name: "sent_on", placeholder: "2026/11/01", size: 10, "aria-label": t("date") }),
  segment,
  el("input", { name: "mailed", type: "number", min: 0, placeholder: t("mailed"), "aria-label": t("mailed"), style: "width:7em", required: true }),
  el("input", { name: "responses", type: "number", min: 0, placeholder: t("responses"), "aria-label": t("responses"), style: "width:7em", required: true }),
  el("button", { type: "submit" }, t("add_month")));
  return card(`${body.name} (${body.scope === "all" ? t("chain") : body.scope})`,
    table([
      { label: t("month"), value: (r) => month(r.month) },
      { label: t("date"), value: (r) => day(r.sent_on) },
      { label: t("segment"), value: (r) => segmentName(r.segment) },
      { label: t("size_on_day"), value: (r) => num(r.segment_size), num: true },
      { label: t("mailed"), value: (r) => num(r.mailed), num: true },
      { label: t("responses"), value: (r) => num(r.responses), num: true },
      { label: t("response_rate"), value: (r) => pct(r.response_rate), num: true },
    ], rows),
    el("h3", {}, t("total")),
    table([
      { label: t("segment"), value: (r) => segmentName(r.segment) },
      { label: t("mailed"), value: (r) => num(r.mailed), num: true },
      { label: t("responses"), value: (r) => num(r.responses), num: true },
      { label: t("response_rate"), value: (r) => pct(r.response_rate), num: true },
    ], body.by_segment),
    el("div", { class: "row" }, el("a", { class: "button", href: `/v1/dm-tables/${body.id}${query({ format: "csv" })}`, download: "" }, "CSV")),
    ctx.may("edit_lists") ? form : null, status);
}

export async function render({ scope, params }) {
  const list = await getJSON("/v1/dm-tables");
  const chosen = list.items.find((x) => String(x.id) === params.get("table")) || list.items[0];
  const status = el("div");
  const create = el("form", { class: "row", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const made = await sendJSON("/v1/dm-tables", "POST", { name: e.target.elements.name.value.trim(), scope });
      ctx.go("dm", "", { table: made.id });
    } catch (err) { status.replaceChildren(message(err.message, "error")); }
  } }, el("input", { name: "name", placeholder: t("name"), "aria-label": t("name"), required: true }), el("button", { type: "submit" }, t("new_table")));
  const picker = list.items.length ? el("select", { "aria-label": t("dm_tables"), onchange: (e) => ctx.go("dm", "", { table: e.target.value }) },
    list.items.map((x) => el("option", { value: x.id, selected: x === chosen }, x.name))) : null;
  return el("div", { class: "grid" },
    card(t("dm_tables"), el("div", { class: "row" }, picker), ctx.may("edit_lists") ? create : null, status),
    chosen ? tableView(await getJSON(`/v1/dm-tables/${chosen.id}`), scope) : message(t("nothing")));
}
