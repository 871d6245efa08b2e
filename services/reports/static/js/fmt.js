// How numbers and dates are shown and typed: ¥1,234,567, 12.3%, 2026/11/23, 2026/11.
const grouped = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

export const num = (x) => (x === null || x === undefined || x === "" ? "—" : grouped.format(Number(x)));
export const yen = (x) => (x === null || x === undefined || x === "" ? "—" : `¥${grouped.format(Math.round(Number(x)))}`);
export const pct = (x, digits = 1) => (x === null || x === undefined ? "—" : `${(Number(x) * 100).toFixed(digits)}%`);

// "2026-11-23" (API) → "2026/11/23" (screen); "2026-11" → "2026/11".
export const day = (iso) => (iso ? String(iso).slice(0, 10).replaceAll("-", "/") : "—");
export const month = (iso) => (iso ? String(iso).slice(0, 7).replace("-", "/") : "—");

// What a person typed ("2026/11/23", "2026/1/5", "2026-11-23") → "2026-11-23", or null.
export function parseDay(text) {
  const m = String(text || "").trim().match(/^(\d{4})[/\-.](\d{1,2})[/\-.](\d{1,2})$/);
  if (!m) return null;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(Date.UTC(y, mo - 1, d));
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d) return null;
  return `${m[1]}-${String(mo).padStart(2, "0")}-${String(d).padStart(2, "0")}`;
}

// "2026/11" or "2026-11" → "2026-11", or null.
export function parseMonth(text) {
  const m = String(text || "").trim().match(/^(\d{4})[/\-.](\d{1,2})$/);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 12) return null;
  return `${m[1]}-${String(Number(m[2])).padStart(2, "0")}`;
}

export function addDays(iso, n) {
  const d = new Date(`${iso}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

export function addMonths(isoMonth, n) {
  const [y, m] = isoMonth.split("-").map(Number);
  const total = y * 12 + (m - 1) + n;
  return `${Math.floor(total / 12)}-${String((total % 12) + 1).padStart(2, "0")}`;
}
