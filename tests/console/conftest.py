"""Headless Chromium (Debian's /usr/bin/chromium, never a downloaded build) driven by
Playwright, with a fresh empty profile per test and no network beyond loopback."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("HUB_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def screenshots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each page's screenshot goes: HUB_CONSOLE_ARTIFACTS, or console-screenshots/
    under pytest's base temporary directory (--basetemp)."""
    chosen = os.environ.get("HUB_CONSOLE_ARTIFACTS")
    path = Path(chosen) if chosen else tmp_path_factory.getbasetemp() / "console-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def browser_context(tmp_path: Path) -> AsyncIterator[object]:
    missing = ""
    try:
        import playwright.async_api as playwright_api
    except ImportError:
        missing = "the playwright package is not installed (the dev extra)"
    if not missing and shutil.which(CHROMIUM) is None:
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if missing:
        # CI must run these tests, not skip them: .ci/run installs both.
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    async with playwright_api.async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            await context.close()
