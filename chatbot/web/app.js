// The web chat page: the hub token the user pastes is kept in sessionStorage (gone when
// the tab closes) and sent as an Authorization header, never as a cookie; every text
// from the server is put in the page with textContent, never as HTML.
const $ = (id) => document.getElementById(id);
let sessionId = "";

function token() { return sessionStorage.getItem("hubToken") || ""; }
function headers() { return { "Authorization": `Bearer ${token()}`, "Content-Type": "application/json" }; }
function status(text) { $("status").textContent = text; }

async function errorText(response) {
  try { return (await response.json()).error.message; } catch { return `HTTP ${response.status}`; }
}

async function loadBots() {
  const response = await fetch("/v1/bots", { headers: headers() });
  if (!response.ok) { status(await errorText(response)); return; }
  const { bots } = await response.json();
  const select = $("bot");
  select.replaceChildren();
  for (const bot of bots) {
    const option = document.createElement("option");
    option.value = bot.id;
    option.textContent = bot.name;
    select.append(option);
  }
  const ready = bots.length > 0;
  select.disabled = $("question").disabled = $("send").disabled = !ready;
  status(ready ? "" : "No bot yet: create one with hub-chatbot.");
}

function addMessage(kind, text) {
  const item = document.createElement("li");
  item.className = kind;
  const body = document.createElement("div");
  body.textContent = text;
  item.append(body);
  $("conversation").append(item);
  return item;
}

function showCitations(item, citations) {
  if (!citations || citations.length === 0) return;
  const list = document.createElement("div");
  list.className = "citations";
  list.append("Sources: ");
  citations.forEach((citation, index) => {
    if (index) list.append("; ");
    const label = `${citation.source_name}${citation.title ? ` (${citation.title})` : ""}${citation.page ? `, p. ${citation.page}` : ""}`;
    if (citation.url && /^https?:\/\//.test(citation.url)) {
      const link = document.createElement("a");
      link.href = citation.url;
      link.rel = "noopener noreferrer";
      link.textContent = label;
      list.append(link);
    } else {
      list.append(label);
    }
  });
  item.append(list);
}

// Reads the answer as server-sent events: `delta` pieces, then `end` with the citations.
async function ask(question) {
  addMessage("user", question);
  const item = addMessage("bot", "");
  const body = item.firstChild;
  const response = await fetch(`/v1/bots/${encodeURIComponent($("bot").value)}:streamAsk`, {
    method: "POST", headers: headers(), body: JSON.stringify({ question, session_id: sessionId }),
  });
  if (!response.ok) { body.textContent = await errorText(response); return; }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const kind = /^event: (\w+)/m.exec(block)?.[1];
      const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] || "{}");
      if (kind === "delta") body.textContent += data.text;
      else if (kind === "end") { sessionId = data.session_id; showCitations(item, data.citations); item.dataset.done = "1"; }
      else if (kind === "error") { body.textContent += `\n[${data.error.message}]`; item.dataset.done = "1"; }
    }
  }
}

$("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("hubToken", $("token").value.trim());
  $("token").value = "";
  loadBots();
});
$("bot").addEventListener("change", () => { sessionId = ""; $("conversation").replaceChildren(); });
$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  $("question").value = "";
  ask(question).catch((error) => status(String(error)));
});
if (token()) loadBots();
