// Usage over time: the tenant's calls or tokens per day, split by credential, model or
// provider (a stacked SVG chart), and the totals of the range.
import { get, query } from "../api.js";
import { legend, stackedBars } from "../chart.js";
import { clear, el, field, table } from "../dom.js";

const DIMENSIONS = {
  credential: { group: "USAGE_GROUP_BY_CREDENTIAL", key: (g) => g.credential_name || g.credential_id || "(none)" },
  model: { group: "USAGE_GROUP_BY_MODEL", key: (g) => g.model || "(none)" },
  provider: { group: "USAGE_GROUP_BY_PROVIDER", key: (g) => g.provider || "(none)" },
};
const MEASURES = { requests: "calls", total_tokens: "tokens", errors: "errors" };
const MAX_SERIES = 8;
let choice = { by: "credential", measure: "requests", days: 14 };

function dayList(count) {
  const days = [];
  const today = new Date();
  for (let i = count - 1; i >= 0; i--) {
    const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    days.push(d.toISOString().slice(0, 10));
  }
  return days;
}

function seriesOf(groups, days, dimension, measure) {
  const byName = new Map();
  for (const g of groups) {
    const name = dimension.key(g);
    if (!byName.has(name)) byName.set(name, new Array(days.length).fill(0));
    const index = days.indexOf(g.day);
    if (index >= 0) byName.get(name)[index] += Number(g[measure] || 0);
  }
  const all = [...byName.entries()].map(([name, values]) => ({ name, values, total: values.reduce((a, b) => a + b, 0) }));
  all.sort((a, b) => b.total - a.total || a.name.localeCompare(b.name));
  if (all.length <= MAX_SERIES) return all;
  // The largest ones by name, the rest summed: a chart of 40 colours says nothing.
  const kept = all.slice(0, MAX_SERIES - 1);
  const rest = all.slice(MAX_SERIES - 1);
  kept.push({ name: `${rest.length} others`, values: days.map((_, i) => rest.reduce((s, r) => s + r.values[i], 0)) });
  return kept;
}

function controls(ctx) {
  const select = (id, options, value) =>
    el("select", { id }, Object.entries(options).map(([v, text]) => el("option", { value: v, selected: v === String(value) }, text)));
  const by = select("usage-by", { credential: "credential", model: "model", provider: "provider" }, choice.by);
  const measure = select("usage-measure", MEASURES, choice.measure);
  const days = select("usage-days", { 7: "7 days", 14: "14 days", 30: "30 days", 90: "90 days" }, choice.days);
  const change = () => {
    choice = { by: by.value, measure: measure.value, days: Number(days.value) };
    ctx.refresh();
  };
  for (const s of [by, measure, days]) s.addEventListener("change", change);
  return el("form", { class: "inline", id: "usage-controls" }, field("Per", by), field("Show", measure), field("Over", days));
}

export default {
  title: "Usage",
  async render(view, ctx) {
    const days = dayList(choice.days);
    const dimension = DIMENSIONS[choice.by];
    const start = `${days[0]}T00:00:00Z`;
    const [daily, totals, overall] = await Promise.all([
      get(`/v1/usage${query({ start_time: start, group_by: ["USAGE_GROUP_BY_DAY", dimension.group] })}`),
      get(`/v1/usage${query({ start_time: start, group_by: dimension.group })}`),
      get(`/v1/usage${query({ start_time: start })}`),
    ]);
    const series = seriesOf(daily.groups || [], days, dimension, choice.measure);
    const sum = (overall.groups || [])[0] || {};
    clear(view).append(
      controls(ctx),
      el(
        "section",
        { class: "card" },
        el("p", { "data-usage-total": "" }, `Tenant total since ${days[0]}: ${sum.requests || 0} calls, ${sum.errors || 0} errors, ${sum.total_tokens || 0} tokens.`),
        el("div", { class: "chart" }, stackedBars(days, series, { unit: MEASURES[choice.measure] })),
        legend(series),
      ),
      el(
        "section",
        { class: "card" },
        el("h2", {}, `Totals per ${choice.by}`),
        table(
          [choice.by, "Calls", "Errors", "Input tokens", "Output tokens", "Cached tokens", "Mean latency (ms)"],
          (totals.groups || []).map((g) => ({
            attrs: { "data-usage-row": dimension.key(g) },
            cells: [dimension.key(g), g.requests, g.errors, g.input_tokens, g.output_tokens, g.cached_tokens, Number(g.average_latency_ms || 0).toFixed(1)],
          })),
          { numeric: [1, 2, 3, 4, 5, 6] },
        ),
      ),
    );
  },
};
