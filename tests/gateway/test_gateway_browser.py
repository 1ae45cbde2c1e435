"""The web client in headless Chromium (Debian's package) driven by Playwright, with a fake microphone
fed from a WAV: text chat, furigana toggle, hold-to-talk with transcripts and 24 kHz playback."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.browser import CHROMIUM, MARKS, launch_args

pytestmark = MARKS


def wait_turns(page, n: int, timeout_s: float) -> None:
    """Polls from Python: wait_for_function needs 'unsafe-eval', which the page's CSP rightly forbids."""
    for _ in range(int(timeout_s * 10)):
        if page.evaluate("window.kotoba.stats.turns") >= n:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"fewer than {n} turns after {timeout_s} s")


def test_web_client_text_furigana_and_voice(stack, mic_wav, tmp_path):
    import uuid

    from playwright.sync_api import expect, sync_playwright

    url = f"http://{stack.gateway_addr}/"
    privacy_user = f"browser-privacy-{uuid.uuid4().hex[:8]}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=launch_args(mic_wav))
        try:
            page = browser.new_page(viewport={"width": 900, "height": 800})
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.goto(url)
            page.click("#token-box summary")
            page.fill("#token", stack.token("demo-n5"))
            page.click("#connect")
            page.wait_for_selector("#message:not([disabled])", timeout=15000)
            assert "connected" in page.text_content("#status")

            page.fill("#message", "What does 泳ぐ mean?")
            page.click("#send")
            wait_turns(page, 1, 20)
            answer = page.text_content(".msg.tutor")
            assert "swim" in answer.lower()
            page.check("input[value=furigana]")
            assert page.locator(".msg.tutor ruby rt").count() >= 1
            assert "およ" in page.text_content(".msg.tutor ruby rt")  # 泳/およ + ぐ, from the gateway
            page.check("input[value=romaji]")
            assert "oyogu" in page.inner_text(".msg.tutor")

            # Hold to talk for ~3 s of the fake microphone, then release.
            page.hover("#talk")
            page.mouse.down()
            page.wait_for_timeout(3500)
            page.mouse.up()
            wait_turns(page, 2, 60)
            stats = page.evaluate("window.kotoba.stats")
            assert stats["micPeakRms"] > 0.02, stats  # the WAV really reached the worklet
            assert stats["audioChunksOut"] >= 20 and stats["audioBytesIn"] > 24000, stats
            assert page.locator(".msg.learner.transcript").count() >= 1
            assert not stats["errors"], (stats, console)
            assert stats["interrupted"] == 0

            # Privacy settings, as another learner (handed over in the fragment; the panel uses the page's
            # token, over fetch with the header).
            page.goto(url + "#token=" + stack.token(privacy_user))
            page.wait_for_selector("#message:not([disabled])", timeout=15000)
            page.click("#privacy summary")
            expect(page.locator("#privacy-status")).to_have_text("loaded")  # before a click, or it resets
            page.check("#pseudonymize")
            page.click("#privacy-save")
            expect(page.locator("#privacy-status")).to_have_text("saved")
            page.click("#privacy-export")
            expect(page.locator("#privacy-export-out")).to_contain_text(f'"user_id": "{privacy_user}"')
            assert '"pseudonymize": true' in page.text_content("#privacy-export-out")
            shot = Path(os.environ.get("KOTOBA_SCREENSHOT", tmp_path / "web-client.png"))
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
