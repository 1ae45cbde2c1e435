"""`kotoba admin conversations|conversation ID|user ID|summaries|stats` — the admin API for operators."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import grpc
from google.protobuf import json_format

from kotoba.v1 import conversations_pb2 as pb
from kotoba.v1 import conversations_pb2_grpc as pb_grpc
from services.common.auth import ADMIN, auth_metadata, mint_token
from services.common.config import CommonConfig, ConfigError


def _token(args: argparse.Namespace, config: CommonConfig) -> str:
    token = args.token or os.environ.get("KOTOBA_TOKEN", "")
    if token:
        return token
    if args.admin and config.environment == "local":
        return mint_token(config.auth, "kotoba-cli-admin", (ADMIN,), ttl_seconds=300)
    raise ConfigError("KOTOBA_TOKEN", "an admin token is needed: --token, KOTOBA_TOKEN, or --admin (local only)")


def _call(args: argparse.Namespace, method: str, request: Any) -> int:
    try:
        config = CommonConfig.from_env()
        metadata = auth_metadata(_token(args, config))
    except ConfigError as exc:
        print(f"kotoba admin: {exc}", file=sys.stderr)
        return 2
    addr = args.addr or config.addr("conversations")
    with grpc.insecure_channel(addr) as channel:
        try:
            reply = getattr(pb_grpc.ConversationsStub(channel), method)(request, metadata=metadata, timeout=30)
        except grpc.RpcError as exc:
            print(f"kotoba admin: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    data = json_format.MessageToDict(reply, preserving_proto_field_name=True)
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        _print_human(method, reply)
    return 0


def _print_human(method: str, reply: Any) -> None:
    if method == "ListConversations":
        for c in reply.conversations:
            print(f"{c.started_at[:19]}  {c.session_id:24} {c.user_id[:20]:20} {c.turn_count:3} turns  "
                  f"{','.join(c.categories):20} {c.first_question[:60]}")
    elif method in ("GetConversation", "ListUserConversations"):
        for t in reply.turns:
            print(f"[{t.started_at[:19]}] {t.session_id} {t.user_id} {t.mode} "
                  f"{t.summary.category or t.summary_status}\n  Q: {t.question}\n  A: {t.answer[:300]}")
    elif method == "ListSummaries":
        for s in reply.summaries:
            print(f"{s.started_at[:19]}  {s.summary.category:12} {s.summary.response_type:16} "
                  f"{', '.join(s.summary.topics)}")
    elif method == "GetStats":
        print(f"turns {reply.turns} (opted out {reply.opted_out_turns}), sessions {reply.sessions}, "
              f"learners {reply.learners}, cost ${reply.cost_usd:.4f}")
        print(f"first text p50/p95/p99 ms: {reply.first_text_ms.p50:.0f}/{reply.first_text_ms.p95:.0f}/"
              f"{reply.first_text_ms.p99:.0f}; total: {reply.total_ms.p50:.0f}/{reply.total_ms.p95:.0f}/"
              f"{reply.total_ms.p99:.0f}")
        print(f"summaries pending {reply.summary_pending}, failed {reply.summary_failures}")
        for title, counts in (("category", reply.by_category), ("mode", reply.by_mode), ("tool", reply.tool_calls)):
            print(f"by {title}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        for day in reply.daily:
            print(f"  {day.day}  {day.turns:6}  ${day.cost_usd:.4f}  {'#' * min(60, day.turns)}")
    if getattr(reply, "next_page_token", ""):
        print(f"(more: --page-token {reply.next_page_token})")


def _conversations(args: argparse.Namespace) -> int:
    return _call(args, "ListConversations", pb.ListConversationsRequest(
        category=args.category or "", user_id=args.user or "", start_time=args.start or "", end_time=args.end or "",
        query=args.query or "", page_size=args.page_size, page_token=args.page_token or ""))


def _conversation(args: argparse.Namespace) -> int:
    return _call(args, "GetConversation", pb.GetConversationRequest(session_id=args.session_id))


def _user(args: argparse.Namespace) -> int:
    return _call(args, "ListUserConversations", pb.ListUserConversationsRequest(
        user_id=args.user_id, page_size=args.page_size, page_token=args.page_token or ""))


def _summaries(args: argparse.Namespace) -> int:
    return _call(args, "ListSummaries", pb.ListSummariesRequest(
        category=args.category or "", start_time=args.start or "", end_time=args.end or "",
        page_size=args.page_size, page_token=args.page_token or ""))


def _stats(args: argparse.Namespace) -> int:
    return _call(args, "GetStats", pb.GetStatsRequest(start_time=args.start or "", end_time=args.end or ""))


def _common(p: argparse.ArgumentParser, pages: bool = False, times: bool = False) -> None:
    p.add_argument("--token", help="admin bearer token (default: $KOTOBA_TOKEN)")
    p.add_argument("--admin", action="store_true", help="mint a short-lived local admin token (KOTOBA_ENV=local)")
    p.add_argument("--addr", help="Conversations address (default: $KOTOBA_CONVERSATIONS_ADDR)")
    p.add_argument("--json", action="store_true")
    if pages:
        p.add_argument("--page-size", type=int, default=20)
        p.add_argument("--page-token")
    if times:
        p.add_argument("--start", help="RFC 3339 lower bound (inclusive)")
        p.add_argument("--end", help="RFC 3339 upper bound (exclusive)")


def register(cli) -> None:
    """Add the conversation admin commands (conversations, one session, one learner, summaries, stats)."""
    p = cli.subcommand("admin", "conversations", "List logged conversations, newest first.", _conversations)
    _common(p, pages=True, times=True)
    p.add_argument("--category")
    p.add_argument("--user", help="learner id or pseudonym")
    p.add_argument("--query", help="free text in questions and answers")
    p = cli.subcommand("admin", "conversation", "Show every turn of one session.", _conversation)
    p.add_argument("session_id")
    _common(p)
    p = cli.subcommand("admin", "user", "One learner's turns, newest first.", _user)
    p.add_argument("user_id")
    _common(p, pages=True)
    p = cli.subcommand("admin", "summaries", "Turn summaries, newest first.", _summaries)
    _common(p, pages=True, times=True)
    p.add_argument("--category")
    p = cli.subcommand("admin", "stats", "Turns, sessions, learners, categories, latency, cost.", _stats)
    _common(p, times=True)
