// Routes and limits: the tenant's part of the policy file, read-only (it changes through
// the operators' deployment, like the keyring).
import { get } from "../api.js";
import { clear, el, table } from "../dom.js";

const limit = (n) => (Number(n) ? String(n) : "no limit");
const pairs = (map) => Object.entries(map || {}).map(([k, v]) => `${k}=${v}`).join(", ");

export default {
  title: "Routes & limits",
  async render(view) {
    const p = await get("/v1/policy");
    const d = p.defaults || {};
    const tl = p.tenant_limits || {};
    clear(view).append(
      el("p", { class: "muted" }, "From the hub's policy file (HUB_POLICY_FILE); change it there."),
      el(
        "section",
        { class: "card" },
        el("h2", {}, "Tenant rate limits"),
        table(["Requests per minute", "Tokens per minute"], [[limit(tl.requests_per_minute), limit(tl.tokens_per_minute)]]),
      ),
      el(
        "section",
        { class: "card" },
        el("h2", {}, "Routes"),
        table(
          ["Route", "Targets (in order)", "Overrides"],
          (p.routes || []).map((r) => ({
            attrs: { "data-route": r.name },
            cells: [r.name, (r.targets || []).map((t) => `${t.credential} / ${t.model}`).join(" → "), pairs(r.overrides)],
          })),
        ),
      ),
      el(
        "section",
        { class: "card" },
        el("h2", {}, "Per-credential limits and settings"),
        table(
          ["Credential", "Requests per minute", "Tokens per minute", "Overrides"],
          (p.credentials || []).map((c) => [c.credential, limit(c.limits?.requests_per_minute), limit(c.limits?.tokens_per_minute), pairs(c.overrides)]),
        ),
      ),
      el(
        "section",
        { class: "card" },
        el("h2", {}, "Defaults"),
        table(
          ["Setting", "Value"],
          Object.entries(d).map(([k, v]) => [k, String(v)]),
        ),
      ),
    );
  },
};
