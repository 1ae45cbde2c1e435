"""The learner's page and the admin page in headless Chromium (Debian's package, Playwright), on a desktop and
a 390×844 phone: demo sign-in, bad/expired tokens, transcript after reload, reconnect after a drop, readings
from the gateway, chat manners, hold-to-talk from the keyboard, tap targets, sideways scroll and axe-core.

Screenshots go to tests/gateway/screenshots/ (git-ignored); timings to screenshots/timings.json.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from services.common.auth import mint_token
from tests.support.browser import CHROMIUM, MARKS, launch_args

REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = Path(__file__).parent / "screenshots"
pytestmark = MARKS
DESKTOP = {"width": 1100, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def browser(mic_wav):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=launch_args(mic_wav))
        yield b
        b.close()
    if TIMINGS:
        (SHOTS / "timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")


def poll(page, js: str, timeout_s: float = 20, what: str = ""):
    """From Python: wait_for_function needs 'unsafe-eval', which the page's CSP rightly forbids."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = page.evaluate(js)
        if value:
            return value
        page.wait_for_timeout(100)
    raise AssertionError(f"timed out waiting for {what or js}")


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def demo_sign_in(page, url: str, user: str = "demo-n5") -> None:
    page.goto(url)
    page.click(f"#demo-buttons button[data-user={user}]")
    page.wait_for_selector("#message:not([disabled])", timeout=20000)


def ask(page, text: str, turns: int, timeout_s: float = 30) -> None:
    page.fill("#message", text)
    page.click("#send")
    poll(page, f"window.kotoba.stats.turns >= {turns}", timeout_s, f"turn {turns}")


def axe(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"]]


def check_layout(page, width: int) -> None:
    """No sideways scroll; every visible control is at least 44×44 px."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    small = page.evaluate("""() => [...document.querySelectorAll(
            'button, select, input:not([type=radio]):not([type=checkbox]), summary, a, label:has(input)')]
        .filter(e => e.offsetParent !== null)
        .map(e => [e.id || e.textContent.trim().slice(0, 20), e.getBoundingClientRect()])
        .filter(([, r]) => r.width < 44 || r.height < 44)
        .map(([n, r]) => `${n} ${Math.round(r.width)}x${Math.round(r.height)}`)""")
    assert not small, small


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_sign_in_chat_reload_reconnect(stack, browser, viewport):
    from playwright.sync_api import expect

    size = DESKTOP if viewport == "desktop" else PHONE
    url = f"http://{stack.gateway_addr}/"
    ctx = browser.new_context(viewport=size, bypass_csp=True)  # bypass only to inject axe-core
    page = ctx.new_page()
    try:
        page.goto(url)
        expect(page.locator("#demo-buttons button")).to_have_count(3)
        shot(page, f"{viewport}-1-sign-in")
        demo_sign_in(page, url)
        TIMINGS[f"{viewport}_sign_in_ms"] = poll(page, "window.kotoba.timings.signInMs")
        assert "connected" in page.text_content("#status")

        page.fill("#message", "What does 泳ぐ mean?")
        page.click("#send")
        poll(page, "window.kotoba.stats.turns >= 1", 30)
        assert page.evaluate("window.kotoba.stats.thinkingShown") == 1  # shown until the first delta
        TIMINGS[f"{viewport}_first_answer_ms"] = page.evaluate("window.kotoba.timings.firstAnswerMs")
        expect(page.locator("#thinking")).to_be_hidden()
        tutor = page.locator(".msg.tutor").last
        assert "swim" in tutor.inner_text().lower()
        assert "[word:" not in tutor.inner_text() and "[kanji:" not in tutor.inner_text()
        assert page.locator(".msg time").count() >= 2  # timestamps on both messages
        assert page.locator(".msg.tutor span[lang=ja]").count() >= 1

        # Readings come from the gateway's display lists: furigana on 泳, romaji for the span.
        page.check("input[value=furigana]")
        assert page.locator(".msg.tutor ruby[lang=ja] rt").count() >= 1
        assert "およ" in tutor.locator("ruby rt").all_inner_texts()
        shot(page, f"{viewport}-2-furigana")
        page.check("input[value=romaji]")
        assert "oyogu" in tutor.inner_text()
        shot(page, f"{viewport}-3-romaji")
        check_layout(page, size["width"])
        violations = axe(page)
        TIMINGS[f"{viewport}_axe_chat_violations"] = len(violations)
        (SHOTS / f"{viewport}-axe-chat.json").write_text(json.dumps(violations, indent=2))
        assert not [v for v in violations if v["impact"] in ("serious", "critical")], violations

        # Reload: the choice of readings is remembered and the transcript comes back from the gateway.
        page.reload()
        page.wait_for_selector("#message:not([disabled])", timeout=20000)
        expect(page.locator(".msg.history")).to_have_count(2)
        assert "泳ぐ" in page.text_content(".msg.learner.history")
        assert page.is_checked("input[value=romaji]")
        shot(page, f"{viewport}-4-after-reload")

        # A dropped connection: "reconnecting…", then the same session again.
        session = page.evaluate("window.kotoba.state.sessionId")
        page.evaluate("window.kotoba.state.ws.close(4999)")  # seen by the page as a drop, not a sign-out
        poll(page, "window.kotoba.stats.reconnects >= 1", 20, "reconnect")
        assert "connected ·" in page.text_content("#status")
        TIMINGS[f"{viewport}_reconnect_ms"] = page.evaluate("window.kotoba.timings.reconnectMs")
        assert page.evaluate("window.kotoba.state.sessionId") == session
        assert page.locator(".msg.history").count() == 2  # not drawn twice
        ask(page, "And 食べる?", 1)  # counters restarted with the reload
        shot(page, f"{viewport}-5-after-reconnect")
    finally:
        ctx.close()


def test_reconnecting_state_is_visible_while_the_gateway_is_down(stack, browser):
    """A real drop: a second gateway is stopped; the page keeps retrying, then resumes when one is back."""
    addr = stack.start_gateway("gateway-drop")
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    try:
        demo_sign_in(page, f"http://{addr}/", "demo-n4")
        stack.stop_service("gateway-drop")
        poll(page, "document.getElementById('status').textContent.includes('reconnecting')", 10, "reconnecting")
        assert page.is_disabled("#send")
        shot(page, "desktop-6-reconnecting")
    finally:
        ctx.close()


def test_bad_expired_and_expiring_tokens(stack, browser):
    from playwright.sync_api import expect

    url = f"http://{stack.gateway_addr}/"
    ctx = browser.new_context(viewport=PHONE)
    page = ctx.new_page()
    try:
        page.goto(url + "#token=not-a-token")
        expect(page.locator("#signin-msg")).to_contain_text("not accepted")
        expect(page.locator("#demo-buttons button")).to_have_count(3)  # a way to sign in again
        assert "not-a-token" not in page.url  # the fragment is dropped from history
        shot(page, "phone-7-bad-token")

        expired = mint_token(stack.config.auth, "demo-n5", ttl_seconds=-10)
        page.goto(url + f"#token={expired}")
        expect(page.locator("#signin-msg")).to_contain_text("expired")

        # Expiring during the session: token_expired / 4001 → the sign-in again, with the reason.
        short = mint_token(stack.config.auth, "demo-n5", ttl_seconds=4)
        page.goto(url + f"#token={short}")
        page.wait_for_selector("#message:not([disabled])", timeout=20000)
        expect(page.locator("#signin-msg")).to_contain_text("expired", timeout=15000)
        assert page.is_visible("#demo")
        shot(page, "phone-8-expired-in-session")
    finally:
        ctx.close()


def test_refused_message_stays_in_the_box_with_when_to_retry(stack, browser):
    from playwright.sync_api import expect

    addr = stack.start_gateway("gateway-ratelimit", KOTOBA_GATEWAY_MESSAGES_PER_MINUTE="1")
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    try:
        demo_sign_in(page, f"http://{addr}/", "demo-advanced")
        ask(page, "What does 猫 mean?", 1)
        page.fill("#message", "And 犬?")
        page.click("#send")
        expect(page.locator(".msg.error")).to_contain_text("You can send again in")
        # The wait is the gateway's (retry_after: one message a minute here), not a guess.
        assert int(re.search(r"again in (\d+) s", page.text_content(".msg.error")).group(1)) > 50
        assert page.input_value("#message") == "And 犬?"
        assert page.is_disabled("#send")
        assert page.locator(".msg.learner.not-sent").count() == 1
        shot(page, "desktop-9-rate-limited")
    finally:
        ctx.close()
        stack.stop_service("gateway-ratelimit")


def test_sources_become_small_links_and_raw_citations_never_show(stack, browser):
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport=PHONE)
    ctx.grant_permissions(["clipboard-read", "clipboard-write"])
    page = ctx.new_page()
    try:
        demo_sign_in(page, f"http://{stack.gateway_addr}/", "demo-n5")
        # The frames as the gateway sends them once citations.py moves `[word:…]` into `sources`; the
        # leftover citation in the text is the client's fallback.
        page.evaluate("""() => {
            window.kotoba.receive({type: "text", text: "水 (みず) means water [word:水:みず]."});
            window.kotoba.receive({type: "turn_complete", turn_id: "t1",
                display: {furigana: [["水", "みず"], [" (みず) means water.", ""]],
                          romaji: [["水", "mizu"], [" (", ""], ["みず", "mizu"], [") means water.", ""]]},
                sources: [{id: "word:水:みず", kind: "word", label: "水"}]});
        }""")
        tutor = page.locator(".msg.tutor").last
        assert "[word:" not in tutor.inner_text()
        link = tutor.locator("a.source")
        expect(link).to_have_text("水")
        assert link.get_attribute("lang") == "ja"
        link.click()
        assert page.input_value("#message") == "Tell me more about 水"
        page.check("input[value=furigana]")
        tutor.locator("button.copy").click()
        expect(tutor.locator("button.copy")).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == "水 (みず) means water."  # no ruby text
        shot(page, "phone-16-sources")
    finally:
        ctx.close()


def test_space_bar_hold_to_talk_with_level_meter_and_replay(stack, browser):
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    try:
        demo_sign_in(page, f"http://{stack.gateway_addr}/", "demo-n4")
        page.select_option("#language", "ja")
        poll(page, "document.getElementById('status').textContent.includes('Japanese')", 10, "language ja")
        page.select_option("#language", "en")
        poll(page, "document.getElementById('status').textContent.includes('English')", 10, "language en")
        page.locator("#log").click()  # focus off the text field: Space talks
        page.keyboard.down("Space")
        expect(page.locator("#listening")).to_be_visible()
        page.wait_for_timeout(1500)
        assert page.evaluate("document.getElementById('level').value") > 0
        shot(page, "desktop-10-listening")
        page.wait_for_timeout(2000)
        page.keyboard.up("Space")
        expect(page.locator("#listening")).to_be_hidden()
        poll(page, "window.kotoba.stats.turns >= 1", 60, "voice turn")
        stats = page.evaluate("window.kotoba.stats")
        assert stats["micPeakRms"] > 0.02 and stats["audioBytesIn"] > 24000, stats
        expect(page.locator("#replay")).to_be_enabled()
        page.click("#replay")
        expect(page.locator("#stop-audio")).to_be_enabled()
        page.click("#stop-audio")
        expect(page.locator("#stop-audio")).to_be_disabled()
        shot(page, "desktop-11-voice")
    finally:
        ctx.close()


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_admin_page_keyboard_layout_and_refused_token(stack, browser, viewport):
    from playwright.sync_api import expect

    size = DESKTOP if viewport == "desktop" else PHONE
    ctx = browser.new_context(viewport=size, bypass_csp=True)
    page = ctx.new_page()
    try:
        # Some conversations to show (the turn log is written in the background).
        chat = browser.new_context(viewport=DESKTOP)
        learner = chat.new_page()
        demo_sign_in(learner, f"http://{stack.gateway_addr}/", "demo-n5")
        ask(learner, "What does 水 mean?", 1)
        chat.close()

        page.goto(f"http://{stack.gateway_addr}/admin")
        shot(page, f"{viewport}-12-admin-empty")
        page.fill("#token", stack.token(f"admin-{viewport}", "admin"))
        page.click("#load")
        expect(page.locator("#conversations tr").first).to_be_visible(timeout=20000)
        expect(page.locator("#conv-count")).to_contain_text("shown")
        assert "1e-9" not in page.inner_text("main")
        assert "text / voice turns" in page.inner_text("#figures")
        # A row opens from the keyboard.
        page.locator("#conversations tr button.open").first.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#detail")).to_be_visible()
        shot(page, f"{viewport}-13-admin-detail")
        check_layout(page, size["width"])
        violations = axe(page)
        (SHOTS / f"{viewport}-axe-admin.json").write_text(json.dumps(violations, indent=2))
        TIMINGS[f"{viewport}_axe_admin_violations"] = len(violations)
        assert not [v for v in violations if v["impact"] in ("serious", "critical")], violations
        # Filters changed: the detail closes.
        page.fill("#q", "zzz-nothing")
        page.click("#filters button[type=submit]")
        expect(page.locator("#detail")).to_be_hidden()
        # A text search reads the sessions' turns, a time-bounded page at a time: "so far" when more remain.
        expect(page.locator("#conv-count")).to_contain_text("No conversations match these filters", timeout=30000)
        shot(page, f"{viewport}-14-admin-filtered")
        # A learner's token (403): the admin's data goes away.
        page.fill("#token", stack.token("demo-n5"))
        page.click("#load")
        expect(page.locator("#status")).to_contain_text("not an admin")
        assert page.locator("#conversations tr").count() == 0 and page.locator("#figures *").count() == 0
        shot(page, f"{viewport}-15-admin-refused")
    finally:
        ctx.close()
