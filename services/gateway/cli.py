"""`kotoba chat`: a terminal conversation through the gateway (text, or one voice turn from a WAV);
`kotoba me privacy|export|delete`: the learner's privacy controls over the gateway's HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from services.common.auth import mint_token
from services.common.config import CommonConfig
from services.gateway.client import ChatClient, read_wav_16k, write_wav_24k


def _token(args: argparse.Namespace, common: CommonConfig) -> str:
    return args.token or mint_token(common.auth, args.user)


async def _chat(args: argparse.Namespace, url: str | None = None) -> int:
    common = CommonConfig.from_env()
    url = url or args.url or f"ws://{common.addr('gateway')}/v1/chat"
    client = await ChatClient.open(url, _token(args, common))
    async with client:
        mode = "audio" if args.wav else "text"
        session = await client.start(mode, args.language)
        if args.wav:
            result = await client.say(read_wav_16k(Path(args.wav)))
            if args.out and result.audio:
                write_wav_24k(Path(args.out), result.audio)
            if args.json:
                print(json.dumps({"session_id": session["session_id"], **result.as_dict()}, ensure_ascii=False))
            else:
                print(f"you:   {result.transcript('user')}")
                print(f"tutor: {result.answer}")
                print(f"({len(result.audio) / 48000:.1f} s of audio" + (f" → {args.out})" if args.out else ")"))
            return 1 if result.errors else 0
        messages = list(args.message or [])
        interactive = not messages
        status = 0
        while True:
            if messages:
                text = messages.pop(0)
            elif interactive:
                try:
                    text = (await asyncio.to_thread(input, "you> ")).strip()
                except EOFError:
                    break
                if not text:
                    continue
                if text in ("/quit", "/exit"):
                    break
            else:
                break
            if args.json:
                result = await client.ask(text)
                print(json.dumps({"session_id": session["session_id"], "question": text, **result.as_dict()},
                                 ensure_ascii=False), flush=True)
            else:
                await client.send(type="text", text=text)
                result = await _stream_to_terminal(client)
            if result.errors:
                status = 1
        return status


async def _stream_to_terminal(client: ChatClient):
    print("tutor> ", end="", flush=True)
    result = await client.collect(time.perf_counter(), on_text=lambda d: print(d, end="", flush=True))
    print()
    if result.sources:
        print("sources: " + ", ".join(source.get("id", "") for source in result.sources))
    for err in result.errors:
        print(f"error: {err['code']}: {err['message']}", file=sys.stderr)
    return result


def _run(args: argparse.Namespace) -> int:
    try:
        if args.model:
            # Another Live family means another gateway process beside the running stack: a dev tool
            # (devtools/model_gateway.py), which the production image does not ship.
            try:
                model_gateway = importlib.import_module("devtools.model_gateway")
            except ModuleNotFoundError:
                print("kotoba chat: --model needs a source checkout (devtools/)", file=sys.stderr)
                return 2
            with model_gateway.gateway_for_model(args.model) as url:
                return asyncio.run(_chat(args, url))
        return asyncio.run(_chat(args))
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"kotoba chat: {exc}", file=sys.stderr)
        return 2


def register(cli) -> None:
    """Add the `chat` command that talks to the tutor through the gateway."""
    p = cli.command("chat", "Talk to the tutor through the gateway (text, or a voice turn from a WAV).", _run)
    p.add_argument("message", nargs="*", help="messages to send in order (none: interactive)")
    p.add_argument("--user", default="demo-n5", help="learner id for a locally minted token")
    p.add_argument("--token", help="use this token instead of minting one")
    p.add_argument("--url", help="gateway WebSocket URL (default ws://$KOTOBA_GATEWAY_ADDR/v1/chat)")
    p.add_argument("--language", choices=("en", "ja"), help="answer language (default: the learner's)")
    p.add_argument("--wav", help="send this WAV (16-bit PCM) as one voice turn")
    p.add_argument("--out", help="with --wav: write the spoken answer (24 kHz) to this WAV")
    p.add_argument("--json", action="store_true", help="one JSON object per turn")
    p.add_argument("--model", help="talk through a private gateway using this Live model (docs/live-models.md)")
    register_me(cli)


# ---------------------------------------------------------------------- kotoba me …

SETTINGS = ("logging_enabled", "pseudonymize")


class MeError(Exception):
    pass


def _me_request(args: argparse.Namespace, method: str, path: str, body: dict | None = None) -> dict:
    common = CommonConfig.from_env()
    base = (args.url or f"http://{common.addr('gateway')}").rstrip("/")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {_token(args, common)}",
                                          **({"Content-Type": "application/json"} if data else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:  # noqa: S310 - our own gateway URL
            return json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read() or b"{}").get("error") or {}
        except ValueError:
            err = {}
        raise MeError(f"HTTP {exc.code}: {err.get('code', '')}: {err.get('message', exc.reason)}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise MeError(f"gateway unreachable at {base}: {exc}") from None


def _parse_settings(pairs: list[str]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in SETTINGS or value.strip().lower() not in ("true", "false", "on", "off", "1", "0"):
            raise MeError(f"--set takes NAME=true|false with NAME one of {', '.join(SETTINGS)}; got {pair!r}")
        out[name] = value.strip().lower() in ("true", "on", "1")
    return out


def _me(handler):
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except MeError as exc:
            if args.json:
                print(json.dumps({"error": str(exc)}))
            print(f"kotoba me: {exc}", file=sys.stderr)
            return 2
    return run


def _privacy(args: argparse.Namespace) -> int:
    changes = _parse_settings(args.set or [])
    settings = _me_request(args, "PUT", "/api/v1/me/privacy", changes) if changes else \
        _me_request(args, "GET", "/api/v1/me/privacy")
    if args.json:
        print(json.dumps(settings))
    else:
        print("keep my conversations:  " + ("yes" if settings.get("logging_enabled") else "no"))
        print("store under a pseudonym: " + ("yes" if settings.get("pseudonymize") else "no"))
    return 0


def _export(args: argparse.Namespace) -> int:
    data = _me_request(args, "GET", "/api/v1/me/data")
    text = json.dumps(data, ensure_ascii=False, indent=None if args.json else 2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        if not args.json:
            print(f"exported to {args.out}")
    else:
        print(text)
    return 0


def _delete(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise MeError("refusing to erase without --yes (stdin is not a terminal)")
        if input("Erase all your stored conversations? This cannot be undone. [y/N] ").strip().lower() != "y":
            print("nothing erased")
            return 1
    result = _me_request(args, "DELETE", "/api/v1/me/data")
    if args.json:
        print(json.dumps(result))
    else:
        print(f"erased {result.get('deleted_turns', 0)} stored turns")
    return 0


def _me_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", default="demo-n5", help="learner id for a locally minted token")
    p.add_argument("--token", help="use this token instead of minting one")
    p.add_argument("--url", help="gateway base URL (default http://$KOTOBA_GATEWAY_ADDR)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def register_me(cli) -> None:
    """Add the `me` commands for a learner's privacy settings and data."""
    p = cli.subcommand("me", "privacy", "Show (or --set) your privacy settings.", _me(_privacy))
    _me_args(p)
    p.add_argument("--set", action="append", metavar="NAME=BOOL",
                   help=f"change a setting ({', '.join(SETTINGS)}); repeatable")
    p = cli.subcommand("me", "export", "Export your stored data as JSON.", _me(_export))
    _me_args(p)
    p.add_argument("--out", help="write the export to this file")
    p = cli.subcommand("me", "delete", "Erase your stored conversations (and queued logs).", _me(_delete))
    _me_args(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
