"""`kotoba eval answers`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

from services.common.auth import mint_token
from services.common.config import CommonConfig
from services.evaluation.answers import DEFAULT_SET, load_set, run


def _answers(args: argparse.Namespace) -> int:
    common = CommonConfig.from_env()
    url = args.url or f"ws://{common.addr('gateway')}/v1/chat"
    questions = load_set(Path(args.set))
    if args.half != "all":
        questions = [q for q in questions if q.half == args.half]
    if args.category:
        questions = [q for q in questions if q.category in args.category]
    if args.limit:
        questions = questions[:args.limit]

    def show(o) -> None:
        if not args.json:
            mark = "PASS" if o.passed else "FAIL"
            why = "" if o.passed else f"  missing={o.missing} {o.error}".rstrip()
            print(f"{mark} {o.id:32} {o.seconds:5.2f}s{why}", flush=True)

    report = asyncio.run(run(url, lambda user: mint_token(common.auth, user), common.addr("tools"), questions,
                             args.user, concurrency=args.concurrency, progress=show))
    failures = [o for o in report.outcomes if not o.passed]
    if args.failures:
        path = Path(args.failures)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(asdict(o), ensure_ascii=False) + "\n" for o in failures), encoding="utf-8")
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        print(report.table())
        print(f"pass rate {report.pass_rate:.1%} ({report.passed}/{report.total}) in {report.seconds:.1f}s")
        if args.failures:
            print(f"{len(failures)} failures written to {args.failures}")
    return 0 if report.pass_rate >= args.min_pass_rate else 1


def register(cli) -> None:
    """Add the evaluation commands (answers through the gateway) to the command line."""
    p = cli.subcommand("eval", "answers", "Ask the labelled learner questions through the gateway, score the "
                       "answers by required and forbidden facts, print per-category results per half.", _answers)
    p.add_argument("--url", help="gateway WebSocket URL (default ws://$KOTOBA_GATEWAY_ADDR/v1/chat)")
    p.add_argument("--user", default="demo-n4", help="learner for questions without their own user")
    p.add_argument("--set", default=str(DEFAULT_SET), help="question set (JSONL)")
    p.add_argument("--category", action="append", help="only these categories (repeatable)")
    p.add_argument("--half", choices=("all", "dev", "held-out"), default="all",
                   help="only one half of the set (split by a fixed hash of the question id)")
    p.add_argument("--failures", default=".data/eval-failures.jsonl",
                   help="write the failed questions (answer, missing and forbidden facts) here, JSON lines")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--min-pass-rate", type=float, default=0.95, help="exit 1 below this rate")
    p.add_argument("--json", action="store_true")


if __name__ == "__main__":
    sys.exit(0)
