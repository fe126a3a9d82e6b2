// Credentials: list, create, verify, rotate the provider key, delete. A secret is only
// ever typed in (password inputs, sent once); what comes back, and is shown, is the hint.
import { get, patch, post, remove } from "../api.js";
import { clear, el, field, table, when } from "../dom.js";

const path = (id) => `/v1/credentials/${encodeURIComponent(id)}`;

async function listAll() {
  const all = [];
  let token = "";
  do {
    const page = await get(`/v1/credentials?page_size=100${token ? `&page_token=${encodeURIComponent(token)}` : ""}`);
    all.push(...(page.credentials || []));
    token = page.next_page_token || "";
  } while (token && all.length < 2000);
  return all;
}

function createForm(providers, ctx) {
  const provider = el("select", { id: "new-provider", required: true }, providers.map((p) => el("option", { value: p.name }, p.display_name || p.name)));
  const name = el("input", { id: "new-name", required: true, autocomplete: "off" });
  const form = el("form", { class: "grid", id: "create-credential" }, field("Provider", provider), field("Name", name));
  const extra = [];
  const showFields = () => {
    for (const node of extra.splice(0)) node.remove();
    const chosen = providers.find((p) => p.name === provider.value) || { secret_fields: [], option_fields: [] };
    for (const f of chosen.secret_fields || []) {
      const input = el("input", { type: "password", autocomplete: "new-password", "data-secret": f.name, id: `new-secret-${f.name}`, required: f.required || null });
      extra.push(...field(`${f.name} (secret)`, input));
    }
    for (const f of chosen.option_fields || []) {
      const input = el("input", { "data-option": f.name, id: `new-option-${f.name}`, placeholder: f.default_value || "", autocomplete: "off" });
      extra.push(...field(f.name, input));
    }
    submit.before(...extra);
  };
  const submit = el("button", { type: "submit", class: "primary", id: "create-credential-submit" }, "Create credential");
  form.append(submit);
  provider.addEventListener("change", showFields);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const secret = {};
    const options = {};
    for (const input of form.querySelectorAll("[data-secret]")) if (input.value) secret[input.dataset.secret] = input.value;
    for (const input of form.querySelectorAll("[data-option]")) if (input.value) options[input.dataset.option] = input.value;
    try {
      const created = await post("/v1/credentials", { provider: provider.value, name: name.value, secret, options });
      ctx.notify(`Created ${created.name} (${created.hint}).`);
      ctx.refresh();
    } catch (failure) {
      ctx.notify(`Create failed: ${ctx.describe(failure)}`, { error: true });
    }
  });
  queueMicrotask(showFields);
  return form;
}

function rotateForm(credential, ctx) {
  const fieldName = (credential.secret_fields || ["api_key"])[0] || "api_key";
  const input = el("input", { type: "password", autocomplete: "new-password", "data-rotate": credential.name, placeholder: `new ${fieldName}` });
  const form = el("form", { class: "inline" }, input, el("button", { type: "submit" }, "Save key"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const updated = await patch(path(credential.id), { secret: { [fieldName]: input.value }, update_mask: "secret" });
      ctx.notify(`Rotated the key of ${updated.name}; its hint is now ${updated.hint}.`);
      ctx.refresh();
    } catch (failure) {
      ctx.notify(`Rotation failed: ${ctx.describe(failure)}`, { error: true });
    }
  });
  return form;
}

function actions(credential, ctx, result) {
  const verify = el("button", { type: "button", "data-action": "verify" }, "Verify");
  verify.addEventListener("click", async () => {
    result.textContent = "verifying...";
    try {
      const answer = await post(`${path(credential.id)}:verify`, {});
      result.className = answer.valid ? "ok" : "error";
      result.textContent = answer.valid ? "valid" : `invalid: ${answer.reason}`;
    } catch (failure) {
      result.className = "error";
      result.textContent = ctx.describe(failure);
    }
  });
  const rotate = el("button", { type: "button", "data-action": "rotate" }, "Rotate key");
  rotate.addEventListener("click", () => rotate.replaceWith(rotateForm(credential, ctx)));
  // Two clicks: the first arms the button, so one slip deletes nothing.
  const del = el("button", { type: "button", class: "danger", "data-action": "delete" }, "Delete");
  del.addEventListener("click", async () => {
    if (del.dataset.armed !== "true") {
      del.dataset.armed = "true";
      del.textContent = "Confirm delete";
      return;
    }
    try {
      await remove(path(credential.id));
      ctx.notify(`Deleted ${credential.name}.`);
      ctx.refresh();
    } catch (failure) {
      ctx.notify(`Delete failed: ${ctx.describe(failure)}`, { error: true });
    }
  });
  return el("div", { class: "actions" }, verify, rotate, del);
}

export default {
  title: "Credentials",
  async render(view, ctx) {
    const [credentials, providers] = await Promise.all([listAll(), get("/v1/providers")]);
    const rows = credentials.map((c) => {
      const result = el("span", { "data-verify-result": "" });
      const options = Object.entries(c.options || {}).map(([k, v]) => `${k}=${v}`).join(", ");
      return {
        attrs: { "data-credential": c.name },
        cells: [c.name, c.provider, el("code", { "data-hint": "" }, c.hint), options, when(c.update_time), c.revision, el("div", {}, actions(c, ctx, result), result)],
      };
    });
    clear(view).append(
      el("section", { class: "card" }, table(["Name", "Provider", "Key hint", "Options", "Updated", "Revision", ""], rows, { numeric: [5] })),
      el("section", { class: "card" }, el("h2", {}, "New credential"), createForm(providers.providers || [], ctx)),
    );
  },
};
