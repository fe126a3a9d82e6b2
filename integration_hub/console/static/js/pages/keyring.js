// The keyring's state: which key seals new secrets, which can still open old ones, and
// how many of this tenant's credentials each one holds. Never any key material.
import { get } from "../api.js";
import { clear, el, table, when } from "../dom.js";

export default {
  title: "Keyring",
  async render(view) {
    const k = await get("/v1/keyring");
    clear(view).append(
      el(
        "section",
        { class: "card" },
        el("p", {}, "Primary key: ", el("strong", { "data-primary": "" }, k.primary_key_id || "none")),
        el("p", {}, "Oldest key that can still decrypt: ", el("strong", { "data-min-decryption": "" }, k.min_decryption_key_id || "none")),
      ),
      el(
        "section",
        { class: "card" },
        table(
          ["Key", "State", "Created", "Retired", "This tenant's credentials", "Encryptions (whole hub)", "Warning"],
          (k.keys || []).map((key) => ({
            attrs: { "data-key": key.id, "data-state": key.state },
            cells: [key.id, key.state, when(key.create_time), when(key.retire_time), key.credentials, key.encryptions, el("span", { class: key.warning ? "error" : "" }, key.warning)],
          })),
          { numeric: [4, 5] },
        ),
      ),
    );
  },
};
