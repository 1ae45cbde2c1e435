"""`kotoba chat`: a terminal conversation through the gateway (text, or one voice turn from a WAV)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
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
    for err in result.errors:
        print(f"error: {err['code']}: {err['message']}", file=sys.stderr)
    return result


def _run(args: argparse.Namespace) -> int:
    try:
        if args.model:  # another Live family: a private gateway for it (services/gateway/model_gateway.py)
            from services.gateway.model_gateway import gateway_for_model

            with gateway_for_model(args.model) as url:
                return asyncio.run(_chat(args, url))
        return asyncio.run(_chat(args))
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"kotoba chat: {exc}", file=sys.stderr)
        return 2


def register(cli) -> None:
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
