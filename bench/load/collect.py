"""Collect the other areas' benchmark figures by running their own benches (subprocess, one at a time).

Each bench is found in bench/<area>/ (a package with __main__.py, else run*.py / bench_*.py / the only .py),
asked for JSON the way its --help says (`--json PATH`, `--json` flag, or `--out PATH`), and read back from that
file, from the last JSON document on stdout, or from a `results: <path>` line. A bench that is missing,
fails or times out is reported as such; the run goes on.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
AREAS = ("retrieval", "tools", "voice", "conversations", "gateway")


def entry_point(area: str) -> list[str] | None:
    folder = REPO / "bench" / area
    if not folder.is_dir():
        return None
    if (folder / "__main__.py").exists():
        return [sys.executable, "-m", f"bench.{area}"]
    scripts = sorted(p for p in folder.glob("*.py") if p.name != "__init__.py")
    preferred = [p for p in scripts if re.match(r"(run|bench)", p.stem)] or scripts
    if not preferred:
        return None
    script = preferred[0]
    if (folder / "__init__.py").exists():
        return [sys.executable, "-m", f"bench.{area}.{script.stem}"]
    return [sys.executable, str(script.relative_to(REPO))]


def _json_args(help_text: str, out: Path) -> list[str]:
    if re.search(r"--json\s+[A-Z_]+", help_text):
        return ["--json", str(out)]
    if re.search(r"--out\s+[A-Z_]+", help_text):
        return ["--out", str(out)] + (["--json"] if "--json" in help_text else [])
    if "--json" in help_text:
        return ["--json"]
    return []


def _parse(stdout: str, out: Path) -> Any:
    if out.exists() and out.stat().st_size:
        return json.loads(out.read_text())
    text = stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    # The last JSON document: the widest trailing slice starting at a line opening with { that parses.
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].lstrip().startswith("{"):
            try:
                return json.loads("\n".join(lines[i:]))
            except ValueError:
                continue
    m = re.findall(r"results:\s*(\S+\.json)", text)
    if m and Path(m[-1]).exists():
        return json.loads(Path(m[-1]).read_text())
    raise ValueError("no JSON in its output")


def run_one(area: str, timeout_s: float, extra: list[str] | None = None) -> dict[str, Any]:
    argv = entry_point(area)
    if argv is None:
        return {"status": "missing", "note": f"no bench under bench/{area}"}
    with tempfile.TemporaryDirectory(prefix=f"bench-{area}-") as tmp:
        out = Path(tmp) / "result.json"
        try:
            help_text = subprocess.run([*argv, "--help"], cwd=REPO, capture_output=True, text=True,
                                       timeout=120).stdout
        except subprocess.TimeoutExpired:
            help_text = ""
        cmd = [*argv, *_json_args(help_text, out), *(extra or [])]
        started = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"status": "timeout", "command": _show(cmd), "seconds": timeout_s}
        seconds = round(time.perf_counter() - started, 1)
        if proc.returncode:
            return {"status": "failed", "command": _show(cmd), "seconds": seconds, "exit": proc.returncode,
                    "stderr_tail": proc.stderr[-1500:]}
        try:
            result = _parse(proc.stdout, out)
        except ValueError as exc:
            return {"status": "no-json", "command": _show(cmd), "seconds": seconds, "note": str(exc),
                    "stdout_tail": proc.stdout[-1500:]}
        return {"status": "ok", "command": _show(cmd), "seconds": seconds, "result": result}


def _show(cmd: list[str]) -> str:
    parts = [".venv/bin/python" if c == sys.executable else c for c in cmd]
    return " ".join(p if "/tmp" not in p else "<tmp>/result.json" for p in parts)


def collect(areas: tuple[str, ...] = AREAS, timeout_s: float = 1200,
            extra: dict[str, list[str]] | None = None) -> dict[str, Any]:
    out = {}
    for area in areas:
        print(f"[bench] collecting bench/{area} …", file=sys.stderr, flush=True)
        out[area] = run_one(area, timeout_s, (extra or {}).get(area))
        print(f"[bench]   {area}: {out[area]['status']} ({out[area].get('seconds', '-')} s)", file=sys.stderr,
              flush=True)
    return out
