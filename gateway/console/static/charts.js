// Bar charts drawn as SVG by hand (no library, nothing fetched): one bar per group, its count at its end.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // entries: [[label, count], ...]; horizontal bars, the longest full width.
  function bars(title, entries, cls) {
    const box = document.createElement("div");
    box.className = "chart";
    const h = document.createElement("h3");
    h.textContent = title;
    box.appendChild(h);
    const row = 20, left = 150, width = 400;
    const height = Math.max(1, entries.length) * row + 10;
    const svg = el("svg", { width: left + width + 10, height, viewBox: `0 0 ${left + width + 10} ${height}`,
      role: "img", "aria-label": title });
    if (!entries.length) {
      svg.appendChild(el("text", { x: 4, y: 16, class: "empty" }, "no events"));
    }
    const max = Math.max(1, ...entries.map((e) => e[1]));
    entries.forEach(([label, count], i) => {
      const y = 5 + i * row;
      const w = Math.max(1, Math.round((width - 50) * count / max));
      svg.appendChild(el("text", { x: left - 6, y: y + 13, "text-anchor": "end" }, String(label || "(none)")));
      const r = el("rect", { x: left, y, width: w, height: row - 5, class: "bar" + (cls ? " " + cls : "") });
      r.appendChild(el("title", {}, `${label}: ${count}`));
      svg.appendChild(r);
      svg.appendChild(el("text", { x: left + w + 4, y: y + 13 }, String(count)));
    });
    box.appendChild(svg);
    return box;
  }

  // Counts per key, largest first (time series: in key order).
  function count(items, keyOf, byKey) {
    const m = new Map();
    for (const it of items) {
      const k = keyOf(it);
      if (k === null || k === undefined) continue;
      m.set(k, (m.get(k) || 0) + 1);
    }
    const out = Array.from(m.entries());
    out.sort(byKey ? (a, b) => (a[0] < b[0] ? -1 : 1) : (a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    return out;
  }

  window.CustosCharts = { bars, count };
})();
