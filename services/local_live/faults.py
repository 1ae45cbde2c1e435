"""Fault controls for tests and demos, and the per-connection frame recorder.

Faults are `key=value` pairs separated by commas, e.g.
`goaway_after_turns=2,drop_mid_turn=1,delay_first_token_ms=500`. They come from the server
(env KOTOBA_LIVE_FAULTS), then the connection (header `x-kotoba-faults`, or the `kotobaFaults`
string inside a raw client's setup); later sources override earlier ones key by key.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

HEADER = "x-kotoba-faults"
SETUP_FIELD = "kotobaFaults"


class FaultSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Faults:
    goaway_after_turns: int = 0  # send goAway after this many completed turns (0 = never)
    goaway_after_seconds: float = 0.0  # send goAway this long after setup (0 = never)
    goaway_time_left: float = 1.0  # seconds announced in goAway before the server closes
    drop_mid_turn: int = 0  # abort the TCP connection in the middle of this turn number (1-based)
    delay_first_token_ms: int = 0
    delay_setup_ms: int = 0  # answer setup this late (a slow session open upstream)
    reject_setup: bool = False
    never_answer: bool = False  # take turns but never reply (a stalled model)
    ping_delay_ms: int = 0  # answer WebSocket pings this late
    record: bool = False  # keep every frame for GET /debug/frames/<session id>
    reject_resume: bool = False  # handles issued on this connection are refused later (resumption impossible)

    @classmethod
    def parse(cls, spec: str, base: Faults | None = None) -> Faults:
        """Faults from a spec string ("name=value,…") on top of `base`; FaultSpecError for an unknown or bad one."""
        base = base or cls()
        if not spec or not spec.strip():
            return base
        kinds = {f.name: f.type for f in fields(cls)}
        changes: dict[str, Any] = {}
        for pair in spec.split(","):
            if not pair.strip():
                continue
            key, sep, raw = pair.partition("=")
            key, raw = key.strip(), raw.strip()
            if key not in kinds:
                raise FaultSpecError(f"unknown fault {key!r} (known: {', '.join(kinds)})")
            kind = kinds[key]
            try:
                if kind == "bool":
                    if sep and raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError(raw)
                    changes[key] = (not sep) or raw.lower() in ("1", "true", "yes")
                elif kind == "int":
                    changes[key] = int(raw)
                else:
                    changes[key] = float(raw)
            except ValueError:
                raise FaultSpecError(f"fault {key}: bad value {raw!r}") from None
            if not isinstance(changes[key], bool) and changes[key] < 0:
                raise FaultSpecError(f"fault {key}: must not be negative")
        return replace(base, **changes)


class FrameLog:
    """Every frame of recorded connections, in memory (bounded) and optionally as JSONL files."""

    def __init__(self, frames_dir: Path | None = None, max_connections: int = 200,
                 max_frames: int = 5000) -> None:
        self.frames_dir = frames_dir
        self.max_connections = max_connections
        self.max_frames = max_frames
        self._logs: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        if frames_dir is not None:
            frames_dir.mkdir(parents=True, exist_ok=True)

    def wants(self, faults: Faults) -> bool:
        """Whether this connection's frames are to be recorded (asked by its faults, or for every connection)."""
        return faults.record or self.frames_dir is not None

    def add(self, conn_id: str, direction: str, frame: Any) -> None:
        """Keep one frame of a connection (the newest ones, bounded), and append it to its file when recording to disk."""
        entry = {"t": time.time(), "dir": direction, "frame": frame}
        with self._lock:
            log = self._logs.get(conn_id)
            if log is None:
                log = self._logs[conn_id] = deque(maxlen=self.max_frames)
                while len(self._logs) > self.max_connections:
                    self._logs.popitem(last=False)
            log.append(entry)
        if self.frames_dir is not None:
            # Small appends; the file is a debugging aid, not a hot path.
            with open(self.frames_dir / f"{conn_id}.jsonl", "a", encoding="utf-8") as out:
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def frames(self, conn_id: str) -> list[dict[str, Any]] | None:
        """The recorded frames of one connection; None when it recorded none."""
        with self._lock:
            log = self._logs.get(conn_id)
            return list(log) if log is not None else None
