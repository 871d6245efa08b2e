// Small DOM and chart helpers shared by the pages. Charts are Chart.js (static/vendor), one
// registry so a page change destroys the previous page's charts.
import { SEGMENTS, segmentName, t } from "./i18n.js";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export const card = (title, ...children) =>
  el("section", { class: "card" }, title ? el("h2", {}, title) : null, ...children);

// A table that scrolls inside its card on a narrow screen instead of widening the page.
// columns: [{ label, value: (row) => text|Node, num: bool, cls }]
export function table(columns, rows, attrs = {}) {
  const head = el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : "" }, c.label)));
  const body = rows.map((row) =>
    el("tr", attrs.rowAttrs ? attrs.rowAttrs(row) : {},
      columns.map((c) => el("td", { class: [c.num ? "num" : "", c.cls ? c.cls(row) : ""].join(" ").trim() }, c.value(row)))));
  return el("div", { class: "scroll" }, el("table", { class: attrs.class || "" }, el("thead", {}, head), el("tbody", {}, body)));
}

export const link = (href, text) => el("a", { href }, text);
export const customerLink = (id, scope) =>
  link(`#/customer/${encodeURIComponent(id)}?scope=${encodeURIComponent(scope || "all")}`, id);

export function message(text, kind = "info") {
  return el("p", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

// Colours per segment: one hue per tier, lighter for lapsed.
const HUES = { first: 200, fledgling: 150, steady: 45, trendy: 280, loyal: 350 };
export function segmentColor(segment, alpha = 1) {
  const [tier, state] = segment.split("_");
  const light = state === "lapsed" ? 75 : 45;
  return `hsla(${HUES[tier] ?? 0}, 65%, ${light}%, ${alpha})`;
}

const charts = new Set();
export function destroyCharts() {
  for (const c of charts) c.destroy();
  charts.clear();
}

export function chart(config, { height = 260, label = "" } = {}) {
  const canvas = el("canvas", { role: "img", "aria-label": label });
  const box = el("div", { class: "chart", style: `height:${height}px` }, canvas);
  const options = { responsive: true, maintainAspectRatio: false, animation: false, ...config.options };
  // eslint-disable-next-line no-undef
  const made = new Chart(canvas, { ...config, options });
  charts.add(made);
  return box;
}

export function donut(title, values) {
  return chart({
    type: "doughnut",
    data: {
      labels: SEGMENTS.map(segmentName),
      datasets: [{ data: SEGMENTS.map((s) => values[s] || 0), backgroundColor: SEGMENTS.map((s) => segmentColor(s)) }],
    },
    options: { plugins: { legend: { position: "bottom", labels: { boxWidth: 12, font: { size: 11 } } }, title: { display: true, text: title } } },
  }, { height: 320, label: title });
}

export function spinner() {
  return el("p", { class: "loading" }, t("loading"));
}
