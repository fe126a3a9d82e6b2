// Hub tokens of the tenant: create (scopes, expiry) and revoke. A new token's secret is
// shown once, in this page, from the create answer; the hub keeps only its hash.
import { get, post } from "../api.js";
import { clear, el, field, table, when } from "../dom.js";

const SCOPES = ["SCOPE_ADMIN", "SCOPE_INVOKE"];
const label = (scope) => scope.replace("SCOPE_", "").toLowerCase();

function state(token) {
  if (token.revoke_time) return "revoked";
  if (token.expire_time && new Date(token.expire_time) <= new Date()) return "expired";
  return "active";
}

function createForm(ctx, reveal) {
  const name = el("input", { id: "token-name", autocomplete: "off", maxlength: 200 });
  const boxes = SCOPES.map((scope) => el("input", { type: "checkbox", value: scope, id: `token-scope-${label(scope)}`, checked: scope === "SCOPE_INVOKE" }));
  const expiry = el("input", { id: "token-expiry", type: "datetime-local" });
  const form = el(
    "form",
    { class: "grid", id: "create-token" },
    field("Name", name),
    el("span", {}, "Scopes"),
    el("span", { class: "actions" }, boxes.map((box) => el("label", {}, box, " ", label(box.value)))),
    field("Expires (local time, empty: never)", expiry),
    el("span"),
    el("button", { type: "submit", class: "primary" }, "Create token"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { name: name.value, scopes: boxes.filter((b) => b.checked).map((b) => b.value) };
    if (expiry.value) body.expire_time = new Date(expiry.value).toISOString();
    try {
      const created = await post("/v1/tokens", body);
      await ctx.refresh();
      reveal(created);
    } catch (failure) {
      ctx.notify(`Create failed: ${ctx.describe(failure)}`, { error: true });
    }
  });
  return form;
}

// The one time a token is shown: kept in this closure until the page is left.
let justCreated = null;

export default {
  title: "Tokens",
  async render(view, ctx) {
    const { tokens = [] } = await get("/v1/tokens");
    const rows = tokens.map((t) => {
      const revoke = el("button", { type: "button", class: "danger", "data-action": "revoke" }, "Revoke");
      revoke.addEventListener("click", async () => {
        try {
          await post(`/v1/tokens/${encodeURIComponent(t.id)}:revoke`, {});
          ctx.notify(`Revoked token ${t.name || t.id}.`);
          ctx.refresh();
        } catch (failure) {
          ctx.notify(`Revoke failed: ${ctx.describe(failure)}`, { error: true });
        }
      });
      return {
        attrs: { "data-token": t.id, "data-state": state(t) },
        cells: [t.name, el("code", {}, t.id, t.id === ctx.me?.token_id ? el("span", { class: "muted", "data-this-session": "" }, " (this console)") : ""), (t.scopes || []).map(label).join(", "), when(t.create_time), when(t.expire_time) || "never", state(t), state(t) === "active" ? revoke : ""],
      };
    });
    const secretArea = el("div", { id: "new-token" });
    if (justCreated) {
      secretArea.append(
        el("p", {}, `Token ${justCreated.token.name || justCreated.token.id} created. Copy it now: it is not shown again.`),
        el("p", { class: "secret-once", "data-new-token": "" }, justCreated.secret),
      );
      justCreated = null;
    }
    clear(view).append(
      secretArea,
      el("section", { class: "card" }, table(["Name", "Id", "Scopes", "Created", "Expires", "State", ""], rows)),
      el(
        "section",
        { class: "card" },
        el("h2", {}, "New token"),
        createForm(ctx, (created) => {
          justCreated = created;
          ctx.refresh();
        }),
      ),
    );
  },
};
