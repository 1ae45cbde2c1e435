"""The /admin page in headless Chromium, served through handle_admin by a tiny HTTP wrapper
(standing in for the gateway's process_request) over a real Conversations gRPC server."""

from __future__ import annotations

import asyncio
import os
from urllib.parse import parse_qs, urlsplit

import pytest

from services.gateway.admin import handle_admin

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs chromium (apt-get install chromium)")]


async def serve_admin(stub) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, target, _ = (await reader.readline()).decode().split(" ", 2)
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode().strip()):
                name, _, value = line.partition(":")
                headers[name.strip()] = value.strip()
            parts = urlsplit(target)
            status, out_headers, body = await handle_admin(method, parts.path, parse_qs(parts.query), headers, stub)
            head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close",
                    *(f"{k}: {v}" for k, v in out_headers.items())]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_admin_page_shows_stats_and_searches(conv, new_turn):
    from playwright.async_api import async_playwright, expect

    first = new_turn(question="What does 食べる mean?", intent="word_meaning")
    second = new_turn(question="Which particle: は or が?", intent="grammar_question",
                      answer="は marks the topic; が marks the subject.")
    await conv.append("learner-a", first)
    await conv.append("learner-b", second)
    await conv.settle()
    server, port = await serve_admin(conv.stub)
    admin = conv.token_for("admin-1", "admin")
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM)
            page = await browser.new_page()
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            await page.goto(f"http://127.0.0.1:{port}/admin")
            await page.fill("#token", admin)
            await page.click("#load")
            await page.wait_for_selector("#conversations tr")
            assert await page.locator("#conversations tr").count() == 2
            figures = await page.text_content("#figures")
            assert "2turns" in figures.replace(" ", "") and "2learners" in figures.replace(" ", "")
            bars = page.locator("#chart-turns rect")
            assert await bars.count() >= 7
            assert max([int(await bars.nth(i).get_attribute("data-value")) for i in range(await bars.count())]) == 2
            assert await page.locator("#chart-category rect").count() == 2

            await page.fill("#q", "particle")
            await page.click("#filters button")
            # (wait_for_function would need 'unsafe-eval', which the page's CSP rightly forbids)
            await expect(page.locator("#conversations tr")).to_have_count(1)
            await page.click("#conversations tr")
            await page.wait_for_selector("#turns .turn")
            assert "は marks the topic" in await page.text_content("#turns")
            assert all(u.startswith(f"http://127.0.0.1:{port}/") for u in requests)  # nothing from the internet

            await page.fill("#token", conv.token_for("learner-a"))
            await page.click("#load")
            await page.wait_for_selector("#status.error")
            assert "403" in await page.text_content("#status")
            await browser.close()
    finally:
        server.close()
        await server.wait_closed()
