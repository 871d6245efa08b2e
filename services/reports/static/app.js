// Kizuna dashboard: reads the reports JSON API, no build step, no dependencies.
// Labels only here; every number and segment comes from the API (the one classification lives
// in shared/cpm.py, never in the browser).
"use strict";

const TIERS = [
  ["first", "初回", "First"],
  ["fledgling", "よちよち", "Fledgling"],
  ["steady", "コツコツ", "Steady"],
  ["trendy", "流行", "Trendy"],
  ["loyal", "優良", "Loyal"],
];
const STATES = [["active", "現役", "Active"], ["lapsed", "離脱", "Lapsed"]];
const LIVE_MS = 5000;

const $ = (id) => document.getElementById(id);
const yen = new Intl.NumberFormat("ja-JP", { style: "currency", currency: "JPY", maximumFractionDigits: 0 });
const int = new Intl.NumberFormat("ja-JP");
const pct = (x) => `${(Number(x) * 100).toFixed(1)}%`;

const view = { segment: null, next: null, timer: null, portfolio: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

function params() {
  const q = new URLSearchParams({ scope: $("scope").value || "all" });
  if ($("as-of").value) q.set("as_of", $("as-of").value);
  return q;
}

// Who is logged in (GET /v1/session); its csrf_token goes with every change (X-CSRF-Token).
const session = { csrf: null };

function toLogin() {
  location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
}

async function api(path, options = {}) {
  const method = (options.method || "GET").toUpperCase();
  const headers = { ...(options.headers || {}) };
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  const response = await fetch(path, { ...options, headers, credentials: "same-origin" });
  if (response.status === 401) {
    toLogin();
    throw Object.assign(new Error("ログインしてください / please log in"), { status: 401 });
  }
  if (!response.ok) {
    let detail = `${response.status}`;
    try {
      const body = await response.json();
      const err = body.error || {};
      const problems = (err.problems || []).map((p) => `${p.field}: ${p.reason}`).join("; ");
      detail = problems || err.message || detail;
    } catch (_) { /* not JSON */ }
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return response;
}

function showError(message) {
  const banner = $("banner");
  banner.hidden = !message;
  banner.textContent = message || "";
}

// --- portfolio ---------------------------------------------------------------------------------

async function loadScopes() {
  try {
    const { scopes } = await (await api("/v1/scopes")).json();
    const select = $("scope");
    const current = select.value || "all";
    select.replaceChildren(...scopes.map((s) => el("option", { value: s }, s === "all" ? "all（全店）" : s)));
    select.value = scopes.includes(current) ? current : scopes[0];  // a branch login: its branch
  } catch (e) {
    showError(`範囲を読めません / cannot load scopes: ${e.message}`);
  }
}

async function loadPortfolio() {
  try {
    const body = await (await api(`/v1/portfolio?${params()}`)).json();
    view.portfolio = body;
    render(body);
    showError("");
    $("updated").textContent = `更新 updated ${new Date().toLocaleTimeString("ja-JP")}`;
  } catch (e) {
    showError(`ポートフォリオを読めません / cannot load the portfolio: ${e.message}`);
  }
}

function render(body) {
  const bySegment = Object.fromEntries(body.segments.map((s) => [s.segment, s]));
  $("k-customers").textContent = int.format(body.total_customers);
  $("k-sales").textContent = yen.format(Number(body.total_sales));
  const active = body.segments.filter((s) => s.segment.endsWith("_active")).reduce((n, s) => n + s.customers, 0);
  $("k-active").textContent = body.total_customers ? pct(active / body.total_customers) : "–";
  $("k-loyal-lapsed").textContent = int.format(bySegment.loyal_lapsed.customers);
  $("as-of-label").textContent = `${body.scope} · ${body.as_of} 時点 (as of)`;

  const rows = TIERS.map(([tier, ja, en]) => el("tr", {},
    el("th", { scope: "row" }, el("span", { class: "tier-ja" }, `${ja}客`), el("span", { class: "en" }, en)),
    ...STATES.map(([state]) => cell(bySegment[`${tier}_${state}`], state)),
  ));
  $("matrix").replaceChildren(...rows);

  // Bars scaled to the largest share so small segments stay readable; the labels give the truth.
  const top = Math.max(0.0001, ...body.segments.flatMap((s) => [s.customer_share, s.sales_share]));
  const bar = (kind, value) => el("div", { class: "bar-track" },
    el("div", { class: `bar-fill ${kind}`, style: `width:${(Math.max(0, value) / top) * 100}%` }));
  $("shares").replaceChildren(...body.segments.map((s) => el("div", { class: "share-row" },
    el("span", {}, s.name_ja, " ", el("span", { class: "en" }, englishName(s.segment))),
    el("div", { class: "bars" }, bar("cust", s.customer_share), bar("sales", s.sales_share)),
    el("span", { class: "num" }, pct(s.customer_share), " / ", pct(s.sales_share)),
  )));
}

function englishName(segment) {
  const [tier, state] = segment.split("_");
  const t = TIERS.find((x) => x[0] === tier);
  const s = STATES.find((x) => x[0] === state);
  return `${t[2]} ${s[2].toLowerCase()}`;
}

function cell(s, state) {
  // Heat by customer share: the eye finds where the customers are (and who is leaving).
  const alpha = 0.08 + Math.min(1, s.customer_share * 2.5) * 0.5;
  const rgb = state === "active" ? "var(--active-soft)" : "var(--lapsed-soft)";
  const td = el("td", {
    class: `cell ${state}${view.segment === s.segment ? " selected" : ""}`,
    style: `background: rgba(${rgb}, ${alpha.toFixed(3)})`,
    tabindex: "0",
    role: "button",
    "aria-label": `${s.name_ja} ${englishName(s.segment)}: ${s.customers}`,
    onclick: () => openList(s.segment),
    onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openList(s.segment); } },
  },
    el("div", { class: "seg" }, s.name_ja, " ", el("span", { class: "en" }, englishName(s.segment))),
    el("div", { class: "count" }, int.format(s.customers)),
    el("div", { class: "row" }, el("span", {}, "人数比 ", pct(s.customer_share)), el("span", {}, "金額比 ", pct(s.sales_share))),
    el("div", { class: "row" }, el("span", {}, "売上 sales"), el("span", {}, yen.format(Number(s.sales)))),
  );
  return td;
}

// --- segment list ------------------------------------------------------------------------------

async function openList(segment, more = false) {
  view.segment = segment;
  if (!more) view.next = null;
  const q = new URLSearchParams({ scope: $("scope").value || "all", limit: "50" });
  if (more && view.next) q.set("cursor", view.next);
  try {
    const body = await (await api(`/v1/segments/${segment}/customers?${q}`)).json();
    $("list-card").hidden = false;
    $("list-title").replaceChildren(`${body.name_ja} `, el("span", { class: "en" }, `${englishName(segment)} · ${body.scope}`));
    const rows = body.items.map((c) => el("tr", {},
      el("td", {}, c.customer_id),
      el("td", { class: "num" }, yen.format(Number(c.total_amount))),
      el("td", { class: "num" }, int.format(c.purchase_count)),
      el("td", {}, c.first_purchase_on),
      el("td", {}, c.last_purchase_on),
      el("td", { class: "num" }, int.format(c.tenure_days)),
      el("td", { class: "num" }, int.format(c.lapse_days)),
    ));
    if (more) $("list").append(...rows); else $("list").replaceChildren(...rows);
    if (!rows.length && !more) $("list").append(el("tr", {}, el("td", { colspan: "7", class: "muted" }, "該当なし / nobody here")));
    view.next = body.next;
    $("list-more").hidden = !body.next;
    if (view.portfolio) render(view.portfolio);
    if (!more) $("list-card").scrollIntoView({ behavior: "smooth", block: "nearest" });
  } catch (e) {
    showError(`顧客リストを読めません / cannot load the list: ${e.message}`);
  }
}

async function download(encoding) {
  // Fetched (not a plain link) so that an expired session leads to the login page.
  const q = new URLSearchParams({ scope: $("scope").value || "all", format: "csv", encoding });
  try {
    const response = await api(`/v1/segments/${view.segment}/customers?${q}`);
    const blob = await response.blob();
    const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    const a = el("a", { href: URL.createObjectURL(blob), download: match ? match[1] : `${view.segment}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    showError(`CSV を作れません / cannot export: ${e.message}`);
  }
}

// --- history and transitions ---------------------------------------------------------------------

const TIER_COLOURS = { first: "#3b6ea5", fledgling: "#2a9d8f", steady: "#8a6d3b", trendy: "#c2853d", loyal: "#9b2c2c" };
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function loadHistory() {
  const granularity = $("history-granularity").value;
  const q = new URLSearchParams({ scope: $("scope").value || "all", granularity });
  if (granularity === "day") {
    const to = $("as-of").value ? new Date($("as-of").value) : new Date();
    q.set("from", new Date(to.getTime() - 89 * 86400000).toISOString().slice(0, 10));
  }
  if ($("as-of").value) q.set("to", granularity === "day" ? $("as-of").value : $("as-of").value.slice(0, 7));
  try {
    view.history = await (await api(`/v1/portfolio/history?${q}`)).json();
    drawHistory();
  } catch (e) {
    showError(`推移を読めません / cannot load the history: ${e.message}`);
  }
}

function drawHistory() {
  const body = view.history;
  if (!body) return;
  const measure = $("history-measure").value;
  const W = 800, H = 260, L = 56, R = 8, T = 10, B = 24;
  const n = body.periods.length;
  const values = body.segments.map((s) => s[measure].map(Number));
  const top = Math.max(1, ...values.flat());
  const x = (i) => L + (n > 1 ? (i * (W - L - R)) / (n - 1) : 0);
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}` });
  for (let k = 0; k <= 4; k++) {
    const v = (top * k) / 4;
    chart.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "axis" }));
    chart.append(svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" },
      measure === "sales" ? `¥${int.format(Math.round(v / 1000))}k` : int.format(Math.round(v))));
  }
  const step = Math.max(1, Math.ceil(n / 8));
  body.periods.forEach((p, i) => {
    if (i % step === 0 || i === n - 1) {
      chart.append(svg("text", { x: x(i), y: H - 6, "text-anchor": i === n - 1 ? "end" : "middle" }, p));
    }
  });
  body.segments.forEach((s, k) => {
    const [tier, state] = s.segment.split("_");
    const points = values[k].map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    const line = svg("polyline", {
      points, fill: "none", stroke: TIER_COLOURS[tier], "stroke-width": state === "active" ? 2 : 1.5,
      "stroke-dasharray": state === "lapsed" ? "5 3" : "",
    });
    line.append(svg("title", {}, `${s.segment}: ${int.format(values[k][n - 1] || 0)}`));
    chart.append(line);
  });
  $("history-chart").replaceChildren(chart);
  $("history-legend").replaceChildren(...body.segments.map((s) => {
    const [tier, state] = s.segment.split("_");
    const latest = values[body.segments.indexOf(s)][n - 1] || 0;
    return el("span", {}, el("i", { class: state === "lapsed" ? "dashed" : "", style: `border-color:${TIER_COLOURS[tier]}` }),
      `${englishName(s.segment)} `, el("b", {}, measure === "sales" ? yen.format(latest) : int.format(latest)));
  }));
}

async function loadTransitions() {
  // Without a chosen month: the server's last twelve (its clock may be pinned), show the last
  // complete one.
  const month = $("transition-month").value;
  const q = new URLSearchParams({ scope: $("scope").value || "all" });
  if (month) { q.set("from", month); q.set("to", month); }
  try {
    const body = await (await api(`/v1/transitions?${q}`)).json();
    const m = body.months[month ? 0 : Math.max(0, body.months.length - 2)];
    $("transition-month").value = m.month;
    drawTransitions(m);
  } catch (e) {
    showError(`推移率を読めません / cannot load transitions: ${e.message}`);
  }
}

function drawTransitions(m) {
  const rate = (r) => (r === null || r === undefined ? "–" : pct(r));
  const h = m.headline;
  $("transition-headline").replaceChildren(
    el("span", {}, "初回→よちよち ", el("span", { class: "en" }, "first→fledgling "), el("b", {}, rate(h.first_to_fledgling.rate)),
      ` (${h.first_to_fledgling.customers}/${h.first_to_fledgling.base})`),
    el("span", {}, "復活 ", el("span", { class: "en" }, "comebacks "), el("b", {}, int.format(h.comebacks.total.customers)),
      ` (${rate(h.comebacks.total.rate)})`),
    el("span", {}, "新規 ", el("span", { class: "en" }, "new "), el("b", {}, int.format(h.new))),
    el("span", {}, "優良→離脱 ", el("span", { class: "en" }, "loyal lapsed "), el("b", {}, int.format(h.active_to_lapsed.loyal.customers))),
    m.complete ? "" : el("span", { class: "muted" }, "（不完全 incomplete）"),
  );
  const segments = TIERS.flatMap(([t]) => STATES.map(([s]) => `${t}_${s}`));
  const rows = ["new", ...segments];
  const cols = [...segments, null];
  const cell = Object.fromEntries(m.cells.map((c) => [`${c.from}|${c.to}`, c]));
  const label = (s) => (s === "new" ? "新規 new" : s === null ? "対象外 gone" : englishName(s));
  const head = el("tr", {}, el("th", {}, `${m.eve} → ${m.end}`), ...cols.map((c) => el("th", { scope: "col" }, label(c))));
  const body = rows.filter((r) => m.cells.some((c) => c.from === r)).map((r) => el("tr", {},
    el("th", { scope: "row" }, label(r)),
    ...cols.map((c) => {
      const v = cell[`${r}|${c}`];
      return el("td", { class: r === c ? "diag" : "" }, v ? int.format(v.customers) : "",
        v && v.rate !== null ? el("span", { class: "rate" }, pct(v.rate)) : "");
    }),
  ));
  $("transition-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...body));
}

// --- borders -----------------------------------------------------------------------------------

async function loadRules() {
  try {
    const body = await (await api("/v1/rules")).json();
    const form = $("rules");
    for (const name of ["amount_border", "fledgling_tenure_days", "loyal_tenure_days", "lapse_days"]) {
      form.elements[name].value = Number(body.rules[name]);
    }
    view.rules = body.rules;
    const pending = body.applied_version < body.version ? " · 再分類中 re-classifying…" : "";
    $("rules-version").textContent = `version ${body.version}${body.version ? "" : "（既定 defaults）"}${pending}`;
  } catch (e) {
    $("rules-version").textContent = "";
  }
}

async function saveRules(event) {
  event.preventDefault();
  const form = $("rules");
  const rules = { ...(view.rules || {}) };
  rules.amount_border = form.elements.amount_border.value;
  for (const name of ["fledgling_tenure_days", "loyal_tenure_days", "lapse_days"]) {
    rules[name] = Number(form.elements[name].value);
  }
  const msg = $("rules-msg");
  try {
    const body = await (await api("/v1/rules", {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(rules),
    })).json();
    msg.className = "small ok";
    msg.textContent = `保存しました saved: version ${body.version}`;
    loadRules();
  } catch (e) {
    msg.className = "small error";
    msg.textContent = e.message;
  }
}

// --- wiring ------------------------------------------------------------------------------------

function remember() {
  localStorage.setItem("kizuna.scope", $("scope").value);
}

async function loadSession() {
  const who = await (await api("/v1/session")).json();
  session.csrf = who.csrf_token || null;
  const where = who.branches.length ? who.branches.join(", ") : "全店 whole chain";
  $("who").textContent = `${who.email || who.name} · ${who.tenant_id} · ${who.role} · ${where}`;
}

async function logout() {
  try {
    await api("/v1/session", { method: "DELETE" });
  } finally {
    location.assign("/login");
  }
}

function schedule() {
  clearInterval(view.timer);
  // Live only makes sense for today: a past as-of date does not move.
  if ($("live").checked && !$("as-of").value) view.timer = setInterval(loadPortfolio, LIVE_MS);
}

async function reloadAll() {
  remember();
  await loadScopes();
  await Promise.all([loadPortfolio(), loadRules(), loadHistory(), loadTransitions()]);
  if (view.segment) openList(view.segment);
  schedule();
}

document.addEventListener("DOMContentLoaded", async () => {
  const q = new URLSearchParams(location.search);
  try {
    await loadSession();
  } catch (_) {
    return;  // on its way to the login page
  }
  $("logout").addEventListener("click", logout);
  const scope = q.get("scope") || localStorage.getItem("kizuna.scope") || "all";
  $("scope").replaceChildren(el("option", { value: scope }, scope));
  if (q.get("as_of")) $("as-of").value = q.get("as_of");
  if (q.get("segment")) view.segment = q.get("segment");  // a shareable link to one list

  $("scope").addEventListener("change", () => { remember(); loadPortfolio(); loadHistory(); loadTransitions(); if (view.segment) openList(view.segment); });
  $("as-of").addEventListener("change", () => { loadPortfolio(); loadHistory(); schedule(); });
  $("history-granularity").addEventListener("change", loadHistory);
  $("history-measure").addEventListener("change", drawHistory);
  $("transition-month").addEventListener("change", loadTransitions);
  $("today").addEventListener("click", () => { $("as-of").value = ""; loadPortfolio(); loadHistory(); schedule(); });
  $("live").addEventListener("change", schedule);
  $("controls").addEventListener("submit", (e) => { e.preventDefault(); reloadAll(); });
  $("list-close").addEventListener("click", () => { view.segment = null; $("list-card").hidden = true; if (view.portfolio) render(view.portfolio); });
  $("list-more").addEventListener("click", () => openList(view.segment, true));
  for (const b of document.querySelectorAll("[data-encoding]")) b.addEventListener("click", () => download(b.dataset.encoding));
  $("rules").addEventListener("submit", saveRules);
  reloadAll();
});
