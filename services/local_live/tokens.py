"""Token estimates for usageMetadata (the engine has no tokenizer; Gemini's figures are similar)."""

from __future__ import annotations

import math

AUDIO_TOKENS_PER_SECOND = 25


def text_tokens(text: str) -> int:
    """About 4 Latin characters per token; Japanese characters count about one token each."""
    if not text:
        return 0
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return math.ceil(ascii_chars / 4) + (len(text) - ascii_chars)


def audio_tokens(pcm_bytes: int, rate: int) -> int:
    """The input tokens Gemini bills for this much 16-bit PCM audio at this rate."""
    seconds = pcm_bytes / 2 / rate
    return math.ceil(seconds * AUDIO_TOKENS_PER_SECOND) if pcm_bytes else 0
