"""The admin console end to end: a real in-process hub on loopback, a loopback OpenAI fake
behind the real SDK, and headless Chromium driving the console's pages.

Each page is screenshotted into the screenshots dir (conftest.py: HUB_CONSOLE_ARTIFACTS, or
console-screenshots/ under pytest's base temporary directory).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.harness import HubUnderTest, running_hub, settings_for

FIRST_KEY = "sk-console-first-0123456789abcdef"
SECOND_KEY = "sk-console-second-9876543210fedcba"
WRONG_KEY = "sk-console-wrong-00000000000000000"
HOSTILE_NAME = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
POLICY = """
[defaults]
max_attempts = 1

[tenants.acme]
requests_per_minute = 6000
tokens_per_minute = 2000000

[tenants.acme.credentials.main]
requests_per_minute = 600

[tenants.acme.routes.smart]
targets = [{credential = "main", model = "gpt-4o"}, {credential = "broken", model = "gpt-4o-mini"}]

[tenants.globex.routes.secret-route]
targets = [{credential = "theirs", model = "gpt-4o"}]
"""
STEP = 10_000  # ms a page element may take to appear


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(valid_keys={FIRST_KEY, SECOND_KEY}) as server:
        yield server


@pytest.fixture
async def hut(tmp_path: Path) -> AsyncIterator[HubUnderTest]:
    async with running_hub(settings_for(tmp_path, database_url=None, policy=POLICY)) as running:
        yield running


class Page:
    """The console in one browser tab, with what its scripts reported."""

    def __init__(self, page: Any, base: str, shots: Path) -> None:
        self.page = page
        self.base = base
        self.shots = shots
        self.errors: list[str] = []
        self.console: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))

    async def open(self) -> Any:
        return await self.page.goto(self.base + "/console/")

    async def sign_in(self, token: str) -> None:
        await self.page.fill("#token", token)
        await self.page.click("#signin-form button[type=submit]")

    async def show(self, name: str) -> None:
        await self.page.click(f'nav a[data-page="{name}"]')
        await self.page.wait_for_selector(f'#page-{name}[data-loading="false"]', timeout=STEP)

    async def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return path

    async def text(self, selector: str) -> str:
        return str(await self.page.locator(selector).inner_text(timeout=STEP))


@pytest.fixture
async def console(browser_context: Any, hut: HubUnderTest, screenshots_dir: Path) -> Page:
    return Page(await browser_context.new_page(), hut.http_base, screenshots_dir)


async def chat(hut: HubUnderTest, credential: str) -> int:
    body = {
        "credential": credential,
        "model": "gpt-4o",
        "messages": [{"role": "ROLE_USER", "content": [{"text": "hi"}]}],
    }
    async with hut.http.post(
        hut.http_base + "/v1/chat", json=body, headers=hut.headers(hut.tokens.invoke_only)
    ) as r:
        await r.read()
        return r.status


async def whoami_status(hut: HubUnderTest, token: str) -> int:
    async with hut.http.get(hut.http_base + "/v1/whoami", headers=hut.headers(token)) as response:
        return response.status


async def test_console_pages_are_served_with_a_strict_policy(hut: HubUnderTest) -> None:
    for path in ("/console/", "/console/js/app.js", "/console/console.css"):
        async with hut.http.get(hut.http_base + path) as response:
            assert response.status == 200
            headers = response.headers
            assert headers["Content-Security-Policy"] == (
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
            )
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Referrer-Policy"] == "no-referrer"
            assert headers["Cache-Control"] == "no-cache"
            assert "Set-Cookie" not in headers
    async with hut.http.get(hut.http_base + "/console/js/app.js") as response:
        assert response.content_type == "text/javascript"
    async with hut.http.get(hut.http_base + "/console/index.html") as response:
        # No inline script or style in the page: the CSP would block it, and none is needed.
        page = await response.text()
        assert "<script>" not in page
        assert "style=" not in page
        assert "<style" not in page
    for missing in ("/console/../hub.py", "/console/nothing.js", "/console/js/"):
        async with hut.http.get(hut.http_base + missing) as response:
            assert response.status == 404, missing
    async with hut.http.get(hut.http_base + "/console", allow_redirects=False) as response:
        assert response.status == 308
        assert response.headers["Location"] == "/console/"


async def test_an_invoke_only_token_cannot_sign_in(console: Page, hut: HubUnderTest) -> None:
    await console.open()
    await console.sign_in(hut.tokens.invoke_only)
    refused = await console.text("#signin-error:not(:empty)")
    assert "no admin scope" in refused
    assert "SCOPE_INVOKE" in refused
    assert await console.page.locator("nav").is_hidden()
    assert await console.page.evaluate("sessionStorage.length") == 0
    await console.sign_in("ihub_" + "x" * 43)
    assert "unknown hub token" in await console.text("#signin-error:not(:empty)")
    await console.screenshot("signin-refused")


async def test_the_console_manages_a_tenant_end_to_end(
    console: Page, hut: HubUnderTest, fake: FakeOpenAI, browser_context: Any
) -> None:
    page = console.page
    await console.open()
    await console.screenshot("signin")
    await console.sign_in(hut.tokens.admin)
    await page.wait_for_selector('#page-credentials[data-loading="false"]', timeout=STEP)
    assert await console.text("#who") == "tenant acme"
    # The token is in this tab's sessionStorage; no cookie is ever set (nothing for CSRF to ride).
    assert await page.evaluate("Object.keys(sessionStorage)") == ["integration-hub.console.token"]

    # --- credentials: create, verify, rotate the key, see only hints --------------------
    await create_credential(console, "main", FIRST_KEY, fake.base_url)
    await create_credential(console, "broken", WRONG_KEY, fake.base_url)
    main_row = page.locator('tr[data-credential="main"]')
    first_hint = await main_row.locator("[data-hint]").inner_text()
    assert first_hint
    assert FIRST_KEY not in first_hint
    assert first_hint.endswith(FIRST_KEY[-4:])
    await main_row.locator('[data-action="verify"]').click()
    await page.wait_for_selector('tr[data-credential="main"] [data-verify-result].ok', timeout=STEP)
    assert await main_row.locator("[data-verify-result]").inner_text() == "valid"
    broken_row = page.locator('tr[data-credential="broken"]')
    await broken_row.locator('[data-action="verify"]').click()
    await page.wait_for_selector('tr[data-credential="broken"] [data-verify-result].error', timeout=STEP)

    await main_row.locator('[data-action="rotate"]').click()
    await page.fill('[data-rotate="main"]', SECOND_KEY)
    await page.press('[data-rotate="main"]', "Enter")
    await page.wait_for_selector(
        f'tr[data-credential="main"] [data-hint]:text-matches("{SECOND_KEY[-4:]}$")', timeout=STEP
    )
    assert fake.requests, "the verify call reached the fake"
    html = await page.content()
    for key in (FIRST_KEY, SECOND_KEY, WRONG_KEY):
        assert key not in html
    await console.screenshot("credentials")

    # --- traffic: a few calls through the rotated key, and one that fails -----------------
    for _ in range(3):
        assert await chat(hut, "main") == 200
    assert await chat(hut, "broken") != 200  # the provider refuses the wrong key
    assert hut.hub.usage is not None
    await hut.hub.usage.flush()

    await console.show("usage")
    assert "4 calls, 1 errors" in await console.text("[data-usage-total]")
    assert await page.locator("svg[data-chart] rect").count() >= 2
    assert (await page.locator('tr[data-usage-row="main"] td').nth(1).inner_text()) == "3"
    await page.select_option("#usage-by", "model")
    await page.wait_for_selector('tr[data-usage-row="gpt-4o"]', timeout=STEP)
    await console.screenshot("usage")

    await console.show("errors")
    error_row = page.locator("tr[data-error-row]")
    assert await error_row.count() == 1
    cells = await error_row.locator("td").all_inner_texts()
    assert cells[2] == "broken"
    assert cells[4] == "UNAUTHENTICATED"
    assert cells[5] == "PROVIDER_AUTH_FAILED"
    await console.screenshot("errors")

    # --- tokens: create with scopes and expiry, see the secret once, revoke ----------------
    await console.show("tokens")
    await page.fill("#token-name", HOSTILE_NAME)
    await page.check("#token-scope-invoke")
    await page.fill("#token-expiry", "2031-06-30T12:00")
    await page.click("#create-token button[type=submit]")
    secret = (await console.text("[data-new-token]")).strip()
    assert secret.startswith("ihub_")
    assert await whoami_status(hut, secret) == 200
    new_row = page.locator('tr[data-state="active"]', has_text="<script>")
    # The hostile name is shown as the very characters, and no script of it ran.
    assert (await new_row.locator("td").first.inner_text()) == HOSTILE_NAME
    assert "2031-06-30" in await new_row.inner_text()
    assert await page.evaluate("window.__xss") is None
    assert await page.locator("main script, main img").count() == 0
    await console.screenshot("tokens")
    await new_row.locator('[data-action="revoke"]').click()
    await page.wait_for_selector('tr[data-state="revoked"]', timeout=STEP)
    assert "Copy it now" not in await page.content(), "the secret is shown once only"
    deadline = time.monotonic() + 3
    while await whoami_status(hut, secret) != 401:
        assert time.monotonic() < deadline, "the revoked token still works"
        await asyncio.sleep(0.1)

    # --- routes and limits, keyring ----------------------------------------------------------
    await console.show("policy")
    assert "main / gpt-4o → broken / gpt-4o-mini" in await console.text('tr[data-route="smart"]')
    assert "6000" in await console.text("#page-policy")
    assert "secret-route" not in await console.text("#page-policy"), "another tenant's policy"
    await console.screenshot("policy")

    await console.show("keyring")
    assert await console.text("[data-primary]") == "k1"
    assert await console.text("[data-min-decryption]") == "k1"
    key_cells = await page.locator('tr[data-key="k1"] td').all_inner_texts()
    assert key_cells[1] == "primary"
    assert key_cells[4] == "2"
    await console.screenshot("keyring")

    # --- delete (two clicks) -----------------------------------------------------------------
    await console.show("credentials")
    delete = page.locator('tr[data-credential="broken"] [data-action="delete"]')
    await delete.click()
    assert await page.locator('tr[data-credential="broken"]').count() == 1, "one click only arms it"
    await delete.click()
    await page.wait_for_selector('tr[data-credential="broken"]', state="detached", timeout=STEP)
    async with hut.http.get(
        hut.http_base + "/v1/credentials/broken", headers=hut.headers(hut.tokens.admin)
    ) as response:
        assert response.status == 404

    assert await browser_context.cookies() == []
    assert console.errors == [], console.errors

    await page.click("#sign-out")
    await page.wait_for_selector("#signin-form", timeout=STEP)
    assert await page.evaluate("sessionStorage.length") == 0


async def create_credential(console: Page, name: str, key: str, base_url: str) -> None:
    page = console.page
    await page.select_option("#new-provider", "openai")
    await page.fill("#new-name", name)
    await page.fill("#new-secret-api_key", key)
    await page.fill("#new-option-base_url", base_url)
    await page.click("#create-credential-submit")
    await page.wait_for_selector(f'tr[data-credential="{name}"]', timeout=STEP)


async def test_the_policy_blocks_an_inline_script(console: Page, hut: HubUnderTest) -> None:
    await console.open()
    await console.sign_in(hut.tokens.admin)
    await console.page.wait_for_selector('#page-credentials[data-loading="false"]', timeout=STEP)
    # As if a page had an HTML-injection bug: the injected handler and script must not run,
    # and the browser reports each as a CSP violation.
    violations = await console.page.evaluate(
        """async () => {
            const seen = [];
            document.addEventListener("securitypolicyviolation", (e) => seen.push(e.violatedDirective));
            document.body.insertAdjacentHTML("beforeend", '<img src="data:," onerror="window.__inline = 1">');
            const script = document.createElement("script");
            script.textContent = "window.__inline = 2";
            document.body.append(script);
            await new Promise((done) => setTimeout(done, 300));
            return {seen, inline: window.__inline === undefined ? null : window.__inline};
        }"""
    )
    assert violations["inline"] is None
    assert violations["seen"]
    assert all(d.startswith("script-src") for d in violations["seen"])
