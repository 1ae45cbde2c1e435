"""The text blocks the gateway writes into what it sends the model, and the local Live engine reads back.

    <learner-context>   in the system instruction: who the learner is (services/gateway/prompts.py)
    <kotoba-context>    first part of a text turn: Retrieval.Search hits, or {"items": [], "unavailable": true}
                        when retrieval was slow or down (services/gateway/rag.py)

Each block is the tag line, one JSON object, the closing tag line. Gemini reads them as prose; the local
engine (services/local_live/brain/context.py) parses them with the patterns below. docs/protocol.md
describes both; tests/local_live/test_contracts.py fails if either side drifts.
"""

from __future__ import annotations

import json
import re
from typing import Any

LEARNER_CONTEXT = "learner-context"
KOTOBA_CONTEXT = "kotoba-context"
BLOCK_TAGS = (LEARNER_CONTEXT, KOTOBA_CONTEXT)


def format_block(tag: str, payload: dict[str, Any]) -> str:
    """`<tag>`, the payload as JSON (non-ASCII kept readable), `</tag>`."""
    if tag not in BLOCK_TAGS:
        raise ValueError(f"unknown context block {tag!r}")
    return f"<{tag}>\n" + json.dumps(payload, ensure_ascii=False) + f"\n</{tag}>"


def block_pattern(tag: str) -> re.Pattern[str]:
    """Finds a block; group 1 is its JSON text."""
    if tag not in BLOCK_TAGS:
        raise ValueError(f"unknown context block {tag!r}")
    return re.compile(rf"<{tag}>\s*(.*?)\s*</{tag}>", re.S)


LEARNER_CONTEXT_RE = block_pattern(LEARNER_CONTEXT)
KOTOBA_CONTEXT_RE = block_pattern(KOTOBA_CONTEXT)
