// The dashboard's shell: who is logged in, the menu, the branch and date controls, and a hash
// router (#/page/arg?scope=…&as_of=…) that draws one page at a time into <main>.
import { getJSON, loadSession, logout, session } from "./api.js";
import { day, parseDay } from "./fmt.js";
import { lang, setLang, t } from "./i18n.js";
import { destroyCharts, el, message, spinner } from "./ui.js";

const PAGES = {
  home: () => import("./pages/home.js"),
  trends: () => import("./pages/trends.js"),
  customers: () => import("./pages/customers.js"),
  customer: () => import("./pages/customer.js"),
  followups: () => import("./pages/followups.js"),
  rules: () => import("./pages/rules.js"),
  rfm: () => import("./pages/rfm.js"),
  ltv: () => import("./pages/ltv.js"),
  dm: () => import("./pages/dm.js"),
  questions: () => import("./pages/questions.js"),
  imports: () => import("./pages/imports.js"),
  people: () => import("./pages/people.js"),
};
const MENU = ["home", "trends", "customers", "followups", "rules", "rfm", "ltv", "dm", "questions", "imports", "people"];
// What each page needs of the login (shared/access Permission values; GET /v1/session lists the
// login's). Staff, who may see tasks and customers only, start the day on their task list.
const NEEDS = {
  home: "reports", trends: "reports", customers: "lists", customer: "customers",
  followups: "followups", rules: "reports", rfm: "reports", ltv: "reports", dm: "reports",
  questions: "reports", imports: "ingest", people: "people",
};
// Pages whose numbers are "as of a day" show the date control.
const DATED = new Set(["home"]);

const $ = (id) => document.getElementById(id);

export const ctx = {
  scopes: ["all"],
  get route() { return parseHash(); },
  get scope() { return parseHash().params.get("scope") || ctx.scopes[0]; },
  get asOf() { return parseHash().params.get("as_of") || ""; },
  reload: () => render(),
  // Whether the login may do this (GET /v1/session lists what its role may).
  may: (permission) => Boolean(session.who && (session.who.permissions || []).includes(permission)),
  isOwner: () => ctx.may("settings"),
  // Changes the hash (and so the page) keeping the branch and date unless given.
  go(page, arg = "", params = {}) {
    const q = new URLSearchParams({ scope: ctx.scope });
    if (ctx.asOf) q.set("as_of", ctx.asOf);
    for (const [k, v] of Object.entries(params)) (v === null ? q.delete(k) : q.set(k, v));
    location.hash = `#/${page}${arg ? `/${encodeURIComponent(arg)}` : ""}?${q}`;
  },
};

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, search = ""] = raw.split("?");
  const [page, ...rest] = path.split("/");
  const allowed = (p) => PAGES[p] && ctx.may(NEEDS[p]);
  const fallback = MENU.find(allowed) || "followups";
  return { page: allowed(page) ? page : fallback, arg: rest.length ? decodeURIComponent(rest.join("/")) : "", params: new URLSearchParams(search) };
}

function drawMenu(current) {
  const nav = $("menu");
  nav.replaceChildren(...MENU.filter((p) => ctx.may(NEEDS[p])).map((p) =>
    el("a", { href: `#/${p}?scope=${encodeURIComponent(ctx.scope)}${ctx.asOf ? `&as_of=${ctx.asOf}` : ""}`, class: p === current || (p === "customers" && current === "customer") ? "current" : "", "data-page": p, onclick: () => document.body.classList.remove("menu-open") }, t(p))));
}

function drawControls(page) {
  const select = $("scope");
  select.replaceChildren(...ctx.scopes.map((s) => el("option", { value: s }, s === "all" ? t("chain") : s)));
  select.value = ctx.scope;
  $("scope-label").textContent = t("scope");
  const dated = DATED.has(page);
  $("date-controls").hidden = !dated;
  $("as-of-label").textContent = t("as_of");
  $("as-of").value = ctx.asOf ? day(ctx.asOf) : "";
  $("as-of").placeholder = t("today");
  $("lang").textContent = t("language");
  $("logout").textContent = t("logout");
  $("logout").hidden = !session.who;
  $("menu-toggle").setAttribute("aria-label", t("menu"));
  $("who").textContent = session.who && session.who.email ? session.who.email : "";
}

function setDate(iso) {
  ctx.go(ctx.route.page, ctx.route.arg, { as_of: iso || null });
}

function wireControls() {
  $("scope").addEventListener("change", (e) => ctx.go(ctx.route.page, ctx.route.page === "customer" ? ctx.route.arg : "", { scope: e.target.value }));
  $("date-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("as-of").value.trim();
    if (!text) return setDate(null);
    const iso = parseDay(text);
    $("as-of").setCustomValidity(iso ? "" : t("bad_date"));
    if (!iso) return $("as-of").reportValidity();
    setDate(iso);
  });
  $("as-of").addEventListener("input", () => $("as-of").setCustomValidity(""));
  const shift = (n) => {
    const base = ctx.asOf || new Date().toISOString().slice(0, 10);
    const d = new Date(`${base}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() + n);
    setDate(d.toISOString().slice(0, 10));
  };
  $("prev-day").addEventListener("click", () => shift(-1));
  $("next-day").addEventListener("click", () => shift(1));
  $("lang").addEventListener("click", () => { setLang(lang === "ja" ? "en" : "ja"); render(); });
  $("logout").addEventListener("click", () => logout());
  $("menu-toggle").addEventListener("click", () => document.body.classList.toggle("menu-open"));
  window.addEventListener("hashchange", render);
}

let drawing = 0;
async function render() {
  const ticket = ++drawing;
  const { page, arg, params } = parseHash();
  if (!ctx.scopes.includes(ctx.scope)) return ctx.go(page, arg, { scope: ctx.scopes[0] });
  drawMenu(page);
  drawControls(page);
  $("prev-day").textContent = "◀";
  $("prev-day").title = t("prev_day");
  $("next-day").textContent = "▶";
  $("next-day").title = t("next_day");
  const main = $("page");
  destroyCharts();
  main.replaceChildren(spinner());
  main.dataset.page = page;
  main.dataset.ready = "false";
  try {
    const module = await PAGES[page]();
    const nodes = await module.render({ ...ctx, scope: ctx.scope, asOf: ctx.asOf, arg, params });
    if (ticket !== drawing) return;
    main.replaceChildren(...[].concat(nodes));
  } catch (e) {
    if (ticket !== drawing) return;
    console.warn(e);
    main.replaceChildren(message(`${t("error")}: ${e.message}`, "error"));
  }
  main.dataset.render = String(ticket);
  main.dataset.ready = "true";
}

async function start() {
  await loadSession();
  // The chain and each branch for a chain-wide login; a branch login's own branches only.
  ctx.scopes = (await getJSON("/v1/scopes")).scopes;
  wireControls();
  await render();
}

start().catch((e) => {
  $("page").replaceChildren(message(`${t("error")}: ${e.message}`, "error"));
  $("page").dataset.ready = "true";
});
