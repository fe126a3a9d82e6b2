// The chatbot layer's bots and, for the bot picked, its ingestion tasks: read through the
// hub's /console/chatbot/ paths (the page's CSP lets it call only the hub), which pass the
// admin token on to the chatbot. Shown only when the hub has HUB_CHATBOT_URL (app.js).
import { get } from "../api.js";
import { clear, el, table, when } from "../dom.js";

const short = (value, prefix) => String(value || "").replace(prefix, "");
const model = (ref) => (ref && ref.model ? (ref.credential ? `${ref.credential} / ${ref.model}` : `route ${ref.model}`) : "");

function taskRows(tasks) {
  return tasks.map((t) => ({
    attrs: { "data-task": t.id, "data-state": short(t.state, "TASK_STATE_") },
    cells: [
      el("code", {}, t.id),
      short(t.state, "TASK_STATE_"),
      `${t.items_done ?? 0} / ${t.items_total ?? 0}`,
      t.chunks_written ?? 0,
      t.skipped_unchanged ? "unchanged, skipped" : "",
      (t.errors || []).length
        ? el("ul", { "data-task-errors": "" }, t.errors.map((e) => el("li", { class: "error" }, `${e.item}: ${e.message}`)))
        : "",
      when(t.create_time),
      when(t.update_time),
    ],
  }));
}

async function showTasks(area, bot) {
  const { tasks = [] } = await get(`/console/chatbot/v1/bots/${encodeURIComponent(bot.id)}/ingestion-tasks`);
  clear(area).append(
    el("h2", {}, `Ingestion tasks of ${bot.name}`),
    table(["Task", "State", "Items", "Chunks", "Note", "Errors", "Created", "Updated"], taskRows(tasks), { numeric: [3] }),
  );
  area.dataset.tasksOf = bot.id;
}

export default {
  title: "Chatbot",
  async render(view, { notify, describe }) {
    const { bots = [] } = await get("/console/chatbot/v1/bots");
    const tasksArea = el("section", { class: "card", id: "chatbot-tasks" }, el("p", { class: "muted" }, "Pick a bot to see its ingestion tasks."));
    const rows = bots.map((bot) => {
      const pick = el("button", { type: "button", "data-action": "tasks" }, "Tasks");
      pick.addEventListener("click", async () => {
        try {
          await showTasks(tasksArea, bot);
        } catch (failure) {
          notify(`Could not load the tasks of ${bot.name}: ${describe(failure)}`, { error: true });
        }
      });
      return {
        attrs: { "data-bot": bot.id },
        cells: [bot.name, short(bot.purpose, "PURPOSE_").toLowerCase(), model(bot.chat_model), model(bot.embedding_model), el("code", {}, bot.id), pick],
      };
    });
    clear(view).append(
      el("p", { class: "muted" }, "The chatbot layer's bots of this tenant (at most 100), as the chatbot reports them."),
      el("section", { class: "card" }, table(["Name", "Purpose", "Chat model", "Embedding model", "Id", ""], rows)),
      tasksArea,
    );
  },
};
