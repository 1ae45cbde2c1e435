"""Per-session conversation memory: recent turns and the current topic, for follow-ups
("and its reading?") and for restoring a resumed session."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_TURNS = 40
MAX_TOPIC_ITEMS = 12


@dataclass
class Memory:
    history: list[dict[str, str]] = field(default_factory=list)  # {"role": "user"|"model", "text": ...}
    topic: str = ""  # the word or kanji the conversation is about
    last_kind: str = ""  # the previous turn's intent
    topic_items: list[dict[str, Any]] = field(default_factory=list)  # facts already given about the topic

    def remember(self, question: str, answer: str, kind: str, topic: str,
                 topic_items: list[dict[str, Any]] | None = None) -> None:
        """Keep a turn and what it was about, for follow-ups ("and its reading?")."""
        self.history.append({"role": "user", "text": question})
        self.history.append({"role": "model", "text": answer})
        del self.history[:-MAX_TURNS * 2]
        self.last_kind = kind
        if topic and topic != self.topic:
            self.topic, self.topic_items = topic, []
        if topic_items:
            self.topic_items = [dict(i) for i in topic_items[:MAX_TOPIC_ITEMS]]

    def add(self, role: str, text: str) -> None:
        """Content the client put in the history itself (prefilled turns)."""
        self.history.append({"role": role, "text": text})
        del self.history[:-MAX_TURNS * 2]

    def to_dict(self) -> dict[str, Any]:
        """The memory as JSON, for a session resumption handle."""
        return {"history": [dict(h) for h in self.history], "topic": self.topic, "last_kind": self.last_kind,
                "topic_items": [dict(i) for i in self.topic_items]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Memory:
        """The memory a resumption handle stored."""
        return cls(history=[dict(h) for h in data.get("history", [])], topic=data.get("topic", ""),
                   last_kind=data.get("last_kind", ""),
                   topic_items=[dict(i) for i in data.get("topic_items", [])])
