"""End to end through /v1/chat: real gateway, local Live engine, retrieval, tools and conversations."""

from __future__ import annotations

from services.gateway.client import ChatClient


async def test_text_question_without_start_is_grounded(stack):
    client = await ChatClient.open(stack.url, stack.token("demo-n4"))
    async with client:
        result = await client.ask("What does 泳ぐ mean?")
    assert not result.errors, result.errors
    assert "swim" in result.text.lower()
    assert result.first_text_s is not None and result.usage
