"""What the gateway tells the model: learner context in the system instruction, retrieved items
at the start of a text turn, and the functions it declared."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from services.common.contracts import KOTOBA_CONTEXT_RE as _KOTOBA_RE
from services.common.contracts import LEARNER_CONTEXT_RE as _LEARNER_RE


@dataclass
class Learner:
    language: str = "en"
    base_level: str = ""
    display_name: str = ""
    summary: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_system_instruction(cls, text: str) -> Learner:
        """The learner's name, language and level from the gateway's <learner-context> block; defaults without one."""
        match = _LEARNER_RE.search(text or "")
        if not match:
            return cls()
        try:
            raw = json.loads(match.group(1))
        except json.JSONDecodeError:
            return cls()
        if not isinstance(raw, dict):
            return cls()
        settings = raw.get("settings") if isinstance(raw.get("settings"), dict) else {}
        language = str(raw.get("language") or settings.get("language") or "en")
        return cls(
            language="ja" if language.startswith("ja") else "en",
            base_level=str(raw.get("base_level") or settings.get("base_level") or ""),
            display_name=str(raw.get("display_name") or settings.get("display_name") or ""),
            summary=str(raw.get("summary") or ""),
            raw=raw,
        )


@dataclass
class TurnInput:
    """One learner turn as the brain sees it."""

    text: str
    items: list[dict[str, Any]] = field(default_factory=list)
    has_context_block: bool = False  # the gateway ran retrieval for this turn
    context_unavailable: bool = False  # retrieval failed or was slow
    voice: bool = False
    language: str = ""  # a spoken turn: the language it was spoken in ("ja" | "en"); "" follows the learner

    @classmethod
    def from_texts(cls, texts: list[str], voice: bool = False) -> TurnInput:
        """Split a user Content's text parts into the kotoba-context block and the message."""
        items: list[dict[str, Any]] = []
        has_block = unavailable = False
        message_parts = []
        for text in texts:
            match = _KOTOBA_RE.search(text)
            if match:
                has_block = True
                try:
                    block = json.loads(match.group(1))
                except json.JSONDecodeError:
                    block = {"items": [], "unavailable": True}
                if isinstance(block, dict):
                    items.extend(i for i in block.get("items") or [] if isinstance(i, dict))
                    unavailable = unavailable or bool(block.get("unavailable"))
                rest = (text[:match.start()] + text[match.end():]).strip()
                if rest:
                    message_parts.append(rest)
            elif text.strip():
                message_parts.append(text.strip())
        return cls(text=message_parts[-1] if message_parts else "", items=items,
                   has_context_block=has_block, context_unavailable=unavailable, voice=voice)


def declared_names(tools: Any) -> dict[str, dict[str, Any]]:
    """name -> declaration, from setup.tools (functionDeclarations / function_declarations)."""
    names: dict[str, dict[str, Any]] = {}
    for tool in tools or []:
        if not isinstance(tool, dict):
            continue
        for decl in tool.get("functionDeclarations") or tool.get("function_declarations") or []:
            if isinstance(decl, dict) and isinstance(decl.get("name"), str):
                names[decl["name"]] = decl
    return names
