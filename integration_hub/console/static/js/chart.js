// A stacked bar chart drawn as SVG by hand: one bar per day, one colour per series.
// Labels are SVG text nodes (textContent), so a model or credential name is only text.
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = 8;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

// days: ["2026-12-01", ...]; series: [{name, values: [n per day]}]
export function stackedBars(days, series, { width = 900, height = 280, unit = "" } = {}) {
  const pad = { left: 56, right: 12, top: 12, bottom: 40 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const totals = days.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const max = Math.max(1, ...totals);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "data-chart": "" });
  root.append(svg("title", {}, `${unit} per day`));
  root.append(svg("line", { class: "axis", x1: pad.left, y1: pad.top + plotH, x2: width - pad.right, y2: pad.top + plotH }));
  root.append(svg("line", { class: "axis", x1: pad.left, y1: pad.top, x2: pad.left, y2: pad.top + plotH }));
  for (const fraction of [0, 0.5, 1]) {
    const y = pad.top + plotH - fraction * plotH;
    root.append(svg("text", { class: "label", x: pad.left - 6, y: y + 4, "text-anchor": "end" }, Math.round(max * fraction)));
  }
  const slot = plotW / Math.max(1, days.length);
  const barW = Math.max(2, Math.min(48, slot * 0.7));
  days.forEach((day, i) => {
    let y = pad.top + plotH;
    const x = pad.left + i * slot + (slot - barW) / 2;
    series.forEach((s, index) => {
      const value = s.values[i] || 0;
      if (!value) return;
      const h = (value / max) * plotH;
      y -= h;
      const bar = svg("rect", { class: `swatch-${index % COLOURS}`, x, y, width: barW, height: h, "data-series": index });
      bar.append(svg("title", {}, `${s.name} ${day}: ${value} ${unit}`));
      root.append(bar);
    });
    if (days.length <= 16 || i % Math.ceil(days.length / 16) === 0) {
      root.append(svg("text", { class: "label", x: x + barW / 2, y: pad.top + plotH + 16, "text-anchor": "middle" }, day.slice(5)));
    }
  });
  return root;
}

export function legend(series) {
  const box = document.createElement("div");
  box.className = "legend";
  series.forEach((s, index) => {
    const item = document.createElement("span");
    item.className = `swatch-${index % COLOURS}`;
    item.textContent = s.name;
    box.append(item);
  });
  return box;
}
