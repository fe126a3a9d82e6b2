// The console's entry point: sign-in, the navigation between pages (the URL's #fragment),
// and the notices every page shows its outcomes in.
import { ApiError, call, session } from "./api.js";
import { clear, el, field } from "./dom.js";
import chatbot from "./pages/chatbot.js";
import credentials from "./pages/credentials.js";
import errors from "./pages/errors.js";
import keyring from "./pages/keyring.js";
import policy from "./pages/policy.js";
import tokens from "./pages/tokens.js";
import usage from "./pages/usage.js";

const HUB_PAGES = { credentials, tokens, policy, usage, errors, keyring };
// The pages of this sign-in: the hub's, and Chatbot when the hub has a chatbot (hasChatbot).
let PAGES = HUB_PAGES;
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const signOutButton = document.getElementById("sign-out");
const noticeArea = document.getElementById("notice");

export function notify(text, { error = false } = {}) {
  const line = el("p", { class: error ? "error" : "ok", "data-notice": error ? "error" : "ok" }, text);
  noticeArea.append(line);
  setTimeout(() => line.remove(), 8000);
}

function describe(problem) {
  if (problem instanceof ApiError) return `${problem.status || problem.httpStatus}: ${problem.message}`;
  return String(problem && problem.message ? problem.message : problem);
}

function signOut(message) {
  session.clear();
  nav.hidden = true;
  signOutButton.hidden = true;
  who.textContent = "";
  showSignIn(message);
}

// Checks a token with /v1/whoami: only an admin-scoped one may sign in.
async function identify(token) {
  const me = await call("GET", "/v1/whoami", undefined, token);
  if (!(me.scopes || []).includes("SCOPE_ADMIN")) {
    const scopes = (me.scopes || []).join(", ") || "none";
    throw new Error(`This token has no admin scope (it has: ${scopes}). The console needs an admin token.`);
  }
  return me;
}

function showSignIn(message = "") {
  const input = el("input", { id: "token", type: "password", autocomplete: "off", spellcheck: "false", size: 56, required: true });
  const problem = el("p", { id: "signin-error", class: "error", role: "alert" }, message);
  const form = el(
    "form",
    { class: "grid", id: "signin-form" },
    field("Admin token", input),
    el("span"),
    el("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    try {
      const me = await identify(input.value.trim());
      session.token = input.value.trim();
      await start(me);
    } catch (failure) {
      problem.textContent = failure instanceof ApiError ? `Sign-in refused: ${failure.message}` : failure.message;
    }
  });
  clear(main).append(
    el(
      "section",
      { class: "card signin" },
      el("h1", {}, "Sign in"),
      el("p", { class: "muted" }, "With a hub token of the admin scope. It is kept in this tab only (sessionStorage) and sent as an Authorization header."),
      form,
      problem,
    ),
  );
  input.focus();
}

// Who signed in (/v1/whoami): the tenant, and the token id the console runs with.
let current = null;

// Without HUB_CHATBOT_URL the hub answers its /console/chatbot/ paths 404; any other answer
// (even the chatbot being down) shows the page, which then says what is wrong.
async function hasChatbot(token) {
  try {
    await call("GET", "/console/chatbot/v1/bots", undefined, token);
    return true;
  } catch (failure) {
    return !(failure instanceof ApiError && failure.httpStatus === 404);
  }
}

async function start(me) {
  current = me;
  PAGES = (await hasChatbot(session.token)) ? { ...HUB_PAGES, chatbot } : HUB_PAGES;
  who.textContent = `tenant ${me.tenant_id}`;
  who.dataset.tenant = me.tenant_id;
  signOutButton.hidden = false;
  clear(nav).append(
    ...Object.entries(PAGES).map(([name, page]) => el("a", { href: `#${name}`, "data-page": name }, page.title)),
  );
  nav.hidden = false;
  if (!location.hash || !PAGES[location.hash.slice(1)]) location.hash = "#credentials";
  else render();
}

async function render() {
  if (!session.token) return;
  const name = location.hash.slice(1);
  const page = PAGES[name] || PAGES.credentials;
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const view = el("div", { id: `page-${name}`, "data-loading": "true" });
  clear(main).append(el("h1", {}, page.title), view);
  const context = {
    me: current,
    notify,
    describe,
    refresh: () => render(),
  };
  try {
    await page.render(view, context);
  } catch (failure) {
    if (failure instanceof ApiError && failure.httpStatus === 401) {
      signOut(`Signed out: ${failure.message}`);
      return;
    }
    view.append(el("p", { class: "error", "data-page-error": "" }, `Could not load this page: ${describe(failure)}`));
  } finally {
    view.dataset.loading = "false";
  }
}

signOutButton.addEventListener("click", () => signOut("Signed out."));
window.addEventListener("hashchange", () => {
  noticeArea.replaceChildren(); // a page's notices are about that page
  render();
});

async function boot() {
  if (!session.token) return showSignIn();
  try {
    await start(await identify(session.token));
  } catch (failure) {
    signOut(failure.message);
  }
}

boot();
