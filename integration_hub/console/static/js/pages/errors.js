// The tenant's latest failed provider calls, newest first.
import { get } from "../api.js";
import { clear, el, table, when } from "../dom.js";

export default {
  title: "Recent errors",
  async render(view) {
    const { errors = [] } = await get("/v1/errors?page_size=100");
    clear(view).append(
      el("p", { class: "muted" }, "Provider calls that did not end OK (from the usage records), at most 100."),
      el(
        "section",
        { class: "card" },
        table(
          ["Time", "Operation", "Credential", "Model", "Status", "Reason", "Request id"],
          errors.map((e) => ({
            attrs: { "data-error-row": "" },
            cells: [when(e.time), e.operation, e.credential_name || e.credential_id, e.model, e.status, e.reason, el("code", {}, e.request_id)],
          })),
        ),
      ),
    );
  },
};
