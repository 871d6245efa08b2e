// Imports: upload a sales or customers CSV, see the detected dialect and how each column maps
// (a dry run on the first rows), start it, follow its progress, download the rejected rows.
import { api, getJSON, ingest, query } from "../api.js";
import { num } from "../fmt.js";
import { t } from "../i18n.js";
import { card, el, message, table } from "../ui.js";
import { ctx } from "../app.js";

const POLL_MS = 1000;

function detected(p) {
  return el("div", { id: "detected" },
    el("dl", { class: "kv" },
      el("dt", {}, "encoding"), el("dd", {}, p.encoding),
      el("dt", {}, "delimiter"), el("dd", {}, p.delimiter),
      el("dt", {}, "header"), el("dd", {}, String(p.header_line))),
    el("h3", {}, t("mapping")),
    table([
      { label: "#", value: (c) => c.column, num: true },
      { label: t("file"), value: (c) => c.header },
      { label: "→", value: (c) => c.field || "—" },
      { label: t("note"), value: (c) => c.note || "" },
    ], p.columns, { class: "mapping" }),
    ...(p.notes || []).map((n) => el("p", { class: "muted" }, n)),
    ...(p.warnings || []).map((n) => message(n, "error")),
    p.error ? message(p.error, "error") : null,
    el("h3", {}, t("rejected")),
    table([
      { label: "line", value: (r) => r.line, num: true },
      { label: "ok", value: (r) => (r.ok ? "✓" : "✗") },
      { label: t("reason"), value: (r) => (r.ok ? "" : `${r.column}: ${r.reason}`) },
    ], p.rows || [], { class: "rows" }));
}

function progress(row) {
  return el("dl", { class: "kv", id: `import-${row.id}`, dataset: { status: row.status } },
    el("dt", {}, t("status")), el("dd", {}, row.status),
    el("dt", {}, t("progress")), el("dd", {}, `${num(row.accepted ?? 0)} ✓ / ${num(row.rejected ?? 0)} ✗`),
    el("dt", {}, t("rejected")), el("dd", {}, row.rejected ? el("a", { href: ingest(`/v1/imports/${row.id}/rejections${query({ format: "csv" })}`), download: "" }, "CSV") : "—"));
}

export async function render() {
  const recent = await getJSON(ingest("/v1/imports"));
  const out = el("div", { id: "import-result" });
  const kind = el("select", { name: "kind", "aria-label": "kind" }, el("option", { value: "sales" }, "sales 売上"), el("option", { value: "customers" }, "customers 顧客"));
  const file = el("input", { type: "file", name: "file", accept: ".csv,.tsv,.txt,text/csv", "aria-label": t("file"), required: true });
  const branch = el("input", { name: "branch", placeholder: t("branch"), "aria-label": t("branch"), size: 10 });
  const send = async (dryRun) => {
    if (!file.files.length) return out.replaceChildren(message(t("file"), "error"));
    const body = file.files[0];
    const q = query({ dry_run: dryRun ? "true" : undefined, branch: branch.value.trim(), file_name: body.name });
    try {
      const response = await api(ingest(`/v1/imports/${kind.value}${q}`), { method: "POST", body, headers: { "Content-Type": "text/csv" } });
      const row = await response.json();
      if (dryRun) return out.replaceChildren(detected(row));
      out.replaceChildren(progress(row));
      follow(row.id, out);
    } catch (err) { out.replaceChildren(message(err.message, "error")); }
  };
  const page = ctx.route.page;
  async function follow(id, box) {
    while (ctx.route.page === page && document.body.contains(box)) {
      const row = await getJSON(ingest(`/v1/imports/${id}`));
      box.replaceChildren(progress(row));
      if (["done", "failed", "cancelled"].includes(row.status)) return;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
  return el("div", { class: "grid two" },
    card(t("upload"),
      el("form", { class: "row", onsubmit: (e) => { e.preventDefault(); send(false); } },
        kind, file, branch,
        el("button", { type: "button", class: "secondary", onclick: () => send(true) }, t("check_file")),
        el("button", { type: "submit" }, t("start_import"))),
      out),
    card(t("recent_imports"), recent.items.length ? table([
      { label: "#", value: (r) => r.id, num: true },
      { label: t("file"), value: (r) => r.file_name || "" },
      { label: t("status"), value: (r) => r.status },
      { label: "✓", value: (r) => num(r.accepted), num: true },
      { label: "✗", value: (r) => num(r.rejected), num: true },
      { label: t("rejected"), value: (r) => (r.rejected ? el("a", { href: ingest(`/v1/imports/${r.id}/rejections${query({ format: "csv" })}`), download: "" }, "CSV") : "") },
    ], recent.items) : message(t("nothing"))));
}
