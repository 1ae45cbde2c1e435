"""bench/out/report.json → bench/out/report.md: the figures, the command behind each, and the promises checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _ms(v: Any) -> str:
    return "–" if v is None else f"{v:,.0f} ms" if v >= 10 else f"{v:.1f} ms"


def _s(v: Any) -> str:
    return "–" if v is None else f"{v:.2f} s"


def _mb(v: Any) -> str:
    return "–" if v is None else f"{v:,.1f} MB"


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The product's promises and issue 10's bar, checked against this run's figures."""
    out = []

    def add(name: str, figure: Any, limit: str, ok: bool | None) -> None:
        out.append({"target": name, "figure": figure, "limit": limit,
                    "ok": None if ok is None else bool(ok)})

    cold = report.get("cold_start") or {}
    if cold.get("all") is not None:
        add("cold start: all services ready", _s(cold["all"]), "< 5 s", cold["all"] < 5)
    if cold.get("first_answer") is not None:
        add("cold start: first answer", _s(cold["first_answer"]), "< 5 s", cold["first_answer"] < 5)
    levels = report.get("text_levels") or {}
    for n, lv in levels.items():
        ft = (lv.get("first_text") or {}).get("p95_ms")
        tc = (lv.get("turn_complete") or {}).get("p95_ms")
        errs = sum((lv.get("errors") or {}).values()) + sum((lv.get("refused") or {}).values())
        if n in ("200", "50", "1"):
            add(f"{n} text sessions: p95 first text delta", _ms(ft), "< 500 ms", ft is not None and ft < 500)
            add(f"{n} text sessions: errors + refusals", errs, "0", errs == 0)
        else:
            add(f"{n} text sessions: p95 first text delta (beyond the bar)", _ms(ft), "< 500 ms",
                ft is not None and ft < 500)
            add(f"{n} text sessions: errors + refusals (beyond the bar)", errs, "clear refusals only",
                not (lv.get("errors") or {}).get("internal"))
        if tc is not None:
            add(f"{n} text sessions: p95 turn complete (responses)", _ms(tc), "< 3 s", tc < 3000)
        if n == "500":
            crashed = lv.get("crashed_services") or []
            add("500 text sessions: degrade gracefully (no crash)", ", ".join(crashed) or "no crash",
                "no crash; clear refusals", not crashed)
    burst = report.get("burst") or {}
    if burst:
        shape = f"{burst.get('sessions')} sessions within {burst.get('within_s')} s"
        ft = (burst.get("first_text") or {}).get("p95_ms")
        errs = sum((burst.get("errors") or {}).values()) + sum((burst.get("refused") or {}).values())
        add(f"burst, {shape}: p95 first text delta", _ms(ft), "< 500 ms", ft is not None and ft < 500)
        add(f"burst, {shape}: errors + refusals", errs, "0", errs == 0)
    opens = report.get("opens") or {}
    unloaded = (opens.get("gapped") or {}).get("open_adds_p50_ms")
    if unloaded is not None:
        add("session open, unloaded: adds over a turn (p50, open + first answer − later turn)",
            _ms(unloaded), "≤ 15 ms", unloaded <= 15)
    voice = report.get("voice") or {}
    fa = (voice.get("first_audio_after_audio_end") or {}).get("p95_ms")
    if voice:
        add(f"{voice.get('sessions')} voice sessions: p95 first audio", _ms(fa), "< 1 s", fa is not None and fa < 1000)
    for key, label, bar, limit in (("voice_single", "1 voice session", "< 900 ms", 900),
                                   ("voice_5", "5 voice sessions", "< 2 s", 2000)):
        got = ((report.get(key) or {}).get("first_audio_after_audio_end") or {}).get("p95_ms")
        if report.get(key):
            add(f"{label}: p95 first audio after audio_end (issue 19)", _ms(got), bar, got is not None and got < limit)
    churn = (report.get("memory") or {}).get("churn") or {}
    if churn:
        add(f"memory after {churn.get('sessions')} sessions opened/closed: growth", _mb(churn.get("growth_mb")),
            f"< {churn.get('bound_mb')} MB", churn.get("ok"))
    soak = report.get("soak") or {}
    if soak and "turn_logs_lost" in soak:
        add("chaos soak: turn logs lost", soak["turn_logs_lost"], "0", soak["turn_logs_lost"] == 0)
        add("chaos soak: cross-learner leaks", soak["cross_learner_leaks"], "0", soak["cross_learner_leaks"] == 0)
    collected = report.get("collected") or {}
    search = _find(collected.get("retrieval", {}).get("result"), ("p99", "p50"))
    if search is not None:
        add("search p99 incl. query embedding, over gRPC (collected from bench/retrieval)", _ms(search),
            "< 100 ms", search < 100)
    return out


def _burst_lines(report: dict[str, Any]) -> list[str]:
    """Issue 19's shapes beside the steady-state levels: a burst of opens, and what one open costs."""
    lines: list[str] = []
    burst, opens = report.get("burst") or {}, report.get("opens") or {}
    if burst:
        ft, first, later = (burst.get(k) or {} for k in ("first_text", "first_turn_first_text",
                                                         "later_turn_first_text"))
        lines += ["## Burst of new sessions", "",
                  "| sessions / within | questions, think | turns | first text p50 / p95 | first turn p95 | "
                  "later turns p95 | session open p50 / p95 | open − turn p50 | errors | refused | busy retries |",
                  "|---|---|---|---|---|---|---|---|---|---|---|",
                  f"| {burst.get('sessions')} / {burst.get('within_s')} s | {burst.get('questions')}, "
                  f"{burst.get('think_s')} s | {burst.get('turns')} | {_ms(ft.get('p50_ms'))} / {_ms(ft.get('p95_ms'))} | "
                  f"{_ms(first.get('p95_ms'))} | {_ms(later.get('p95_ms'))} | "
                  f"{_ms((burst.get('open') or {}).get('p50_ms'))} / {_ms((burst.get('open') or {}).get('p95_ms'))} | "
                  f"{_ms(burst.get('open_over_turn_p50_ms'))} | {burst.get('errors') or 0} | "
                  f"{burst.get('refused') or 0} | {burst.get('busy_retries', 0)} |", ""]
    if opens:
        gapped, again = opens.get("gapped") or {}, opens.get("returning") or {}
        runs = [("unloaded", f"fresh learners, {gapped.get('gap_s')} s idle before each (the bar)", gapped),
                ("back to back", "fresh learners, the previous session's turn-log, summary and row writes still "
                 "being served", opens),
                ("returning", "the same learners again at once (context cached)", again)]
        runs = [(name, what, run) for name, what, run in runs if run]
        lines += ["## What a session open costs", "",
                  "| run | sessions | open p50 | first answer p50 | later turn p50 | open adds | cores busy |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {name}: {what} | {run.get('sessions')} | {_ms((run.get('open') or {}).get('p50_ms'))} | "
                  f"{_ms((run.get('first_turn_first_text') or {}).get('p50_ms'))} | "
                  f"{_ms((run.get('later_turn_first_text') or {}).get('p50_ms'))} | "
                  f"{_ms(run.get('open_adds_p50_ms'))} | {run.get('cores_busy', '–')} of {_cpus(report)} |"
                  for name, what, run in runs]
        procs = [proc for proc in ("dynalite", "gateway", "conversations", "tools", "retrieval", "local_live", "bench")
                 if any(proc in (run.get("cpu_ms_per_session") or {}) for _, _, run in runs)]
        if procs:
            lines += ["", "CPU per session (an open and two questions; the unloaded run's include what ran in its "
                      "idle gaps), by process:", "",
                      "| run | " + " | ".join(procs) + " |", "|---|" + "---|" * len(procs)]
            lines += [f"| {name} | " + " | ".join(_ms((run.get("cpu_ms_per_session") or {}).get(proc))
                                                 for proc in procs) + " |" for name, _, run in runs]
        lines += ["", "The gateway's stages of each open (p50, ms from `start`; its reads begin at connect):", "",
                  "| stage | " + " | ".join(name for name, _, _ in runs) + " |", "|---|" + "---|" * len(runs)]
        stages = list(dict.fromkeys(stage for _, _, run in runs for stage in (run.get("stages") or {})))
        lines += [f"| {stage} | " + " | ".join(_ms(((run.get("stages") or {}).get(stage) or {}).get("p50_ms"))
                                               for _, _, run in runs) + " |" for stage in stages]
        side = opens.get("side_by_side") or {}
        if side:
            base, cur = side.get("baseline") or {}, side.get("current") or {}
            lines += ["", f"Side by side in the same stack ({side.get('sessions_per_round')} fresh learners per "
                      "round, the two gateways alternating): what an open adds over a turn, p50 per round.", "",
                      "| gateway | rounds | median | ratio |", "|---|---|---|---|",
                      f"| upstream opened after the context read (`KOTOBA_GATEWAY_EARLY_UPSTREAM=0`) | "
                      f"{', '.join(_ms(x) for x in base.get('rounds_ms', []))} | {_ms(base.get('median_ms'))} | 1.00 |",
                      f"| early upstream from the pool (default) | "
                      f"{', '.join(_ms(x) for x in cur.get('rounds_ms', []))} | {_ms(cur.get('median_ms'))} | "
                      f"{side.get('ratio')} |"]
        lines.append("")
    return lines


def _cpus(report: dict[str, Any]) -> Any:
    return (report.get("meta") or {}).get("cpus", "–")


def _find(obj: Any, keys: tuple[str, ...]) -> float | None:
    """A search latency somewhere in the retrieval bench's JSON (its shape belongs to its owner)."""
    if not isinstance(obj, dict):
        return None
    speed = obj.get("speed")
    if isinstance(speed, dict):  # bench/retrieval: {"speed": {"ours_search_rpc_…": {"p50_ms", "p99_ms"}}}
        for name, sub in speed.items():
            if name.startswith("ours_search_rpc") and isinstance(sub, dict):
                for k in keys:
                    if isinstance(sub.get(f"{k}_ms"), (int, float)):
                        return float(sub[f"{k}_ms"])
    for section in ("service", "search", "kotoba", "candidate"):
        sub = obj.get(section)
        if isinstance(sub, dict):
            for k in keys:
                for name in (f"{k}_ms", f"search_{k}_ms", k):
                    if isinstance(sub.get(name), (int, float)):
                        return float(sub[name])
    return None


MAX_RERUN_NOTES = 5


def markdown(report: dict[str, Any]) -> str:
    m = report.get("meta", {})
    lines = [f"# Kotoba benchmark report{' (quick)' if m.get('quick') else ''}", "",
             f"Run `{m.get('command')}` at {m.get('started')} on {m.get('cpus')} CPUs, commit `{m.get('commit')}`, "
             f"{m.get('duration_s')} s in all. Full stack under `make run` settings with the local Live engine "
             f"(fresh processes on free ports, temp dynalite). Every figure below comes from that command; "
             f"raw numbers in `report.json` beside this file.", ""]
    # A section comes from the newest re-run that ran it: one line per command, its newest run.
    reruns = m.get("reruns") or []
    newest = {r["command"]: r for r in reruns}
    for rerun in sorted(newest.values(), key=lambda r: r["started"]):
        lines += [f"Sections re-run and merged: `{rerun['command']}` at {rerun['started']}, commit `{rerun['commit']}`.", ""]
    if len(reruns) > len(newest):
        lines += [f"({len(reruns) - len(newest)} earlier re-runs of the same commands are listed in `report.json`.)", ""]
    checks = report.get("targets") or []
    if checks:
        lines += ["## Promises checked", "", "| target | this run | limit | ok |", "|---|---|---|---|"]
        for c in checks:
            ok = {True: "yes", False: "**no**", None: "?"}[c["ok"]]
            lines.append(f"| {c['target']} | {c['figure']} | {c['limit']} | {ok} |")
        lines.append("")
    setup = report.get("setup") or {}
    cold = report.get("cold_start") or {}
    if cold:
        lines += ["## Cold start", "",
                  "Setup before the services (not part of cold start): "
                  + ", ".join(f"{k} {_s(v)}" for k, v in setup.items()) + ".", "",
                  "| service | ready after launch |", "|---|---|"]
        for k, v in cold.items():
            lines.append(f"| {k} | {_s(v)} |")
        lines.append("")
    levels = report.get("text_levels") or {}
    if levels:
        lines += ["## Text sessions", "",
                  "| sessions | turns | turns/s | first text p50 / p95 / p99 | turn complete p50 / p95 / p99 | "
                  "errors | refused | gateway RSS | engine RSS | all RSS | per session |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for n, lv in levels.items():
            ft, tc, mem = lv.get("first_text", {}), lv.get("turn_complete", {}), lv.get("memory", {})
            lines.append(
                f"| {n} | {lv.get('turns')} | {lv.get('turns_per_s')} | {_ms(ft.get('p50_ms'))} / "
                f"{_ms(ft.get('p95_ms'))} / {_ms(ft.get('p99_ms'))} | {_ms(tc.get('p50_ms'))} / {_ms(tc.get('p95_ms'))}"
                f" / {_ms(tc.get('p99_ms'))} | {lv.get('errors') or 0} | {lv.get('refused') or 0} | "
                f"{_mb(mem.get('gateway_mb'))} | {_mb(mem.get('local_live_mb'))} | {_mb(mem.get('total_mb'))} | "
                f"{mem.get('per_session_kb', '–')} KB |")
        lines += ["", f"Think time: exponential, mean {next(iter(levels.values())).get('think_mean_s')} s; "
                  "sessions ramp in, then each level runs its window. RSS is the peak sampled during the window; "
                  "per session = (gateway + engine peak − idle) / sessions.", ""]
    lines += _burst_lines(report)
    share = report.get("time_share") or {}
    if share:
        lines += ["## Where a turn's time goes", "", "| level | retrieval | tools | engine | gateway + network | turns |",
                  "|---|---|---|---|---|---|"]
        for n, s in share.items():
            lines.append(f"| {n} | {s.get('retrieval', 0):.0%} | {s.get('tools', 0):.0%} | {s.get('engine', 0):.0%} | "
                         f"{s.get('gateway_and_network', 0):.0%} | {s.get('turns')} |")
        lines += ["", "From the stored turn records (latencies.retrieval_ms, tools_ms, total_ms as measured in the "
                  "gateway) against the client's turn time: engine = gateway total − retrieval − tools; "
                  "gateway + network = client total − gateway total.", ""]
    voice = report.get("voice") or {}
    if voice:
        fa, tc = voice.get("first_audio_after_audio_end", {}), voice.get("turn_complete", {})
        lines += ["## Voice sessions", "",
                  f"{voice.get('sessions')} concurrent voice sessions, {voice.get('turns')} turns (speech streamed in "
                  f"real time): first audio byte after audio_end p50 {_ms(fa.get('p50_ms'))}, p95 {_ms(fa.get('p95_ms'))}, "
                  f"p99 {_ms(fa.get('p99_ms'))}; turn complete p50 {_ms(tc.get('p50_ms'))}, p95 {_ms(tc.get('p95_ms'))}. "
                  f"Errors {voice.get('errors') or 0}, refused {voice.get('refused') or 0}. Turn shapes (audio or "
                  f"not, frames seen): {voice.get('turn_shapes') or '–'}.", ""]
        single = report.get("voice_single") or {}
        if single:
            sf = single.get("first_audio_after_audio_end", {})
            lines += [f"Baseline in the same run, one voice session alone ({single.get('turns')} turns): first audio "
                      f"p50 {_ms(sf.get('p50_ms'))}, max {_ms(sf.get('max_ms'))}; read the concurrent figure against it (the gap is "
                      f"queueing for the engine's speech models, STT then TTS, on this machine's CPUs).", ""]
        five = report.get("voice_5") or {}
        if five:
            ff = five.get("first_audio_after_audio_end", {})
            lines += [f"5 concurrent voice sessions ({five.get('turns')} turns): first audio p50 {_ms(ff.get('p50_ms'))}, "
                      f"p95 {_ms(ff.get('p95_ms'))}; errors {five.get('errors') or 0}. Per-stage times (end of speech → "
                      f"transcript → tool → first audio) and the old path side by side: `bench/voice/latency.py`.", ""]
    ov = report.get("overhead") or {}
    if ov:
        lines += ["## Gateway overhead", "",
                  f"{ov.get('turns')} text turns, interleaved: straight to the engine with google-genai (RAG and tools "
                  f"done by the same gateway modules in-process) vs through /v1/chat.", "",
                  "| | direct p50 | gateway p50 | ratio | added |", "|---|---|---|---|---|",
                  f"| first text delta | {_ms(ov['direct_first_text'].get('p50_ms'))} | "
                  f"{_ms(ov['gateway_first_text'].get('p50_ms'))} | {ov.get('ratio_first_text_p50')} | "
                  f"{_ms(ov.get('added_ms_first_text_p50'))} |",
                  f"| turn complete | {_ms(ov['direct_turn_complete'].get('p50_ms'))} | "
                  f"{_ms(ov['gateway_turn_complete'].get('p50_ms'))} | {ov.get('ratio_turn_complete_p50')} | |", ""]
    mem = report.get("memory") or {}
    if mem:
        idle, churn = mem.get("idle") or {}, mem.get("churn") or {}
        lines += ["## Memory", "", "Idle (no sessions): " + ", ".join(f"{k} {_mb(v)}" for k, v in idle.items()) + ".", ""]
        if churn:
            lines += [f"After {churn.get('sessions')} sessions opened and closed ({churn.get('concurrency')} at a time, "
                      f"{churn.get('wall_s')} s, refused {churn.get('refused') or 0}): gateway {_mb(churn.get('before_mb', {}).get('gateway'))}"
                      f" → {_mb(churn.get('after_mb', {}).get('gateway'))}, engine "
                      f"{_mb(churn.get('before_mb', {}).get('local_live'))} → {_mb(churn.get('after_mb', {}).get('local_live'))}; "
                      f"growth {_mb(churn.get('growth_mb'))} (first half {_mb(churn.get('growth_first_half_mb'))}, "
                      f"second half {_mb(churn.get('growth_second_half_mb'))}; bound {churn.get('bound_mb')} MB): "
                      f"{'within' if churn.get('ok') else '**beyond**'} the bound.", ""]
    soak = report.get("soak") or {}
    if soak:
        lines += ["## Chaos soak", "",
                  f"{soak.get('sessions')} sessions for {soak.get('duration_s')} s while "
                  + ", ".join(f"{c['service']} (down {c['down_s']} s)" for c in soak.get("chaos", []))
                  + f" were killed and restarted; sessions with faults {soak.get('faults_per_session')}. "
                  f"Turns sent {soak.get('turns_sent')}, stored {soak.get('turns_stored')}, "
                  f"**lost {soak.get('turn_logs_lost')}**; cross-learner leaks **{soak.get('cross_learner_leaks')}**; "
                  f"error frames {soak.get('error_frames') or {}}; sessions ended early {soak.get('sessions_ended_early') or {}}.",
                  ""]
    collected = report.get("collected") or {}
    if collected:
        lines += ["## Collected from the other benches", "", "| bench | status | command | seconds |", "|---|---|---|---|"]
        for area, c in collected.items():
            lines.append(f"| {area} | {c.get('status')} | `{c.get('command', '–')}` | {c.get('seconds', '–')} |")
        lines.append("")
        for area, c in collected.items():
            if c.get("status") == "ok":
                text = json.dumps(c["result"], ensure_ascii=False, indent=1)
                if len(text) > 4000:
                    text = text[:4000] + "\n… (truncated; full JSON in report.json)"
                lines += [f"### {area}", "", "```json", text, "```", ""]
            elif c.get("status") != "skipped":
                lines += [f"### {area}: {c.get('status')}", "", "```", (c.get("stderr_tail") or c.get("note") or "")[-1500:],
                          "```", ""]
    notes = report.get("notes") or []
    rerun_starts = [n for n in notes if n.startswith("cold start during the re-run")]
    shown = [n for n in notes if n not in rerun_starts] + rerun_starts[-MAX_RERUN_NOTES:]
    if len(rerun_starts) > MAX_RERUN_NOTES:
        shown.append(f"{len(rerun_starts) - MAX_RERUN_NOTES} earlier re-runs' cold starts are in `report.json`.")
    if shown:
        lines += ["## Notes", ""] + [f"- {n}" for n in shown] + [""]
    return "\n".join(lines)


def write(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    report["targets"] = targets(report)
    js, md = out_dir / "report.json", out_dir / "report.md"
    js.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    md.write_text(markdown(report))
    return js, md
