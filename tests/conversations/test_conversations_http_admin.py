"""The gateway's admin HTTP layer (handle_admin) against a real Conversations gRPC server, and the CLI."""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import parse_qs

from services.gateway.admin import handle_admin


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_http_admin_endpoints(conv, new_turn):
    admin = conv.token_for("admin-1", "admin")
    turn = new_turn(intent="kanji_lookup", question="How do I write 猫?")
    await conv.append("learner-7", turn)
    await conv.settle()

    status, headers, body = await handle_admin("GET", "/api/v1/admin/chat/conversations", {"category": "kanji"},
                                               bearer(admin), conv.stub)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    listed = json.loads(body)
    assert [c["session_id"] for c in listed["conversations"]] == [turn.session_id]
    assert listed["conversations"][0]["categories"] == ["kanji"]

    status, _, body = await handle_admin("GET", f"/api/v1/admin/chat/conversations/{turn.session_id}", {},
                                         {"authorization": f"Bearer {admin}"}, conv.stub)
    got = json.loads(body)
    assert status == 200 and got["turns"][0]["summary"]["category"] == "kanji"
    assert got["turns"][0]["question"] == "How do I write 猫?"

    status, _, body = await handle_admin("GET", "/api/v1/admin/chat/conversations/user/learner-7",
                                         {"token": admin}, {}, conv.stub)
    assert status == 200 and [t["turn_id"] for t in json.loads(body)["turns"]] == [turn.turn_id]

    # The gateway hands over parse_qs output (lists of values).
    status, _, body = await handle_admin("GET", "/api/v1/admin/chat/summaries", parse_qs("category=kanji&page_size=5"),
                                         bearer(admin), conv.stub)
    assert status == 200 and json.loads(body)["summaries"][0]["summary"]["topics"]

    status, _, body = await handle_admin("GET", "/api/v1/admin/chat/stats", {}, bearer(admin), conv.stub)
    stats = json.loads(body)
    assert status == 200 and stats["turns"] == 1 and stats["by_category"] == {"kanji": 1}
    assert stats["summary_failures"] == 0 and len(stats["daily"]) >= 7


async def test_http_admin_errors(conv, new_turn):
    admin = conv.token_for("admin-1", "admin")
    learner = conv.token_for("learner-7")
    cases = [
        ("/api/v1/admin/chat/stats", {}, {}, 401),
        ("/api/v1/admin/chat/stats", {}, bearer("not-a-jwt"), 401),
        ("/api/v1/admin/chat/stats", {}, bearer(learner), 403),
        ("/api/v1/admin/chat/conversations", {"token": learner}, {}, 403),
        ("/api/v1/admin/chat/nope", {}, bearer(admin), 404),
        ("/api/v1/admin/chat/conversations/missing-session", {}, bearer(admin), 404),
        ("/api/v1/admin/chat/conversations", {"page_size": "many"}, bearer(admin), 400),
        ("/api/v1/admin/chat/conversations", {"page_size": "500"}, bearer(admin), 400),
        ("/api/v1/admin/chat/stats", {"start_time": "yesterday"}, bearer(admin), 400),
        ("/api/v1/admin/chat/summaries", {"page_token": "garbage!"}, bearer(admin), 400),
    ]
    for path, query, headers, expected in cases:
        status, _, body = await handle_admin("GET", path, query, headers, conv.stub)
        assert status == expected, (path, query, body)
        assert json.loads(body)["error"]["message"]
    status, _, _ = await handle_admin("POST", "/api/v1/admin/chat/stats", {}, bearer(admin), conv.stub)
    assert status == 405


async def test_admin_page_is_self_contained(conv):
    status, headers, body = await handle_admin("GET", "/admin", {}, {}, conv.stub)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert "/api/v1/admin/chat" in page
    assert "http://" not in page.replace('"http://www.w3.org/2000/svg"', "") and "https://" not in page
    assert "default-src 'none'" in headers["Content-Security-Policy"]


async def test_cli_wraps_the_admin_api(conv, new_turn, aws_env):
    turn = new_turn()
    await conv.append("learner-3", turn)
    await conv.settle()
    env = {**aws_env, "KOTOBA_CONVERSATIONS_ADDR": f"127.0.0.1:{conv.app.service.port}"}

    async def kotoba(*argv: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", "admin", *argv, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode, out.decode(), err.decode()

    code, out, _ = await kotoba("stats", "--admin", "--json")
    assert code == 0 and json.loads(out)["turns"] == "1"
    code, out, _ = await kotoba("conversation", turn.session_id, "--admin")
    assert code == 0 and "食べる" in out
    code, out, _ = await kotoba("user", "learner-3", "--json", "--token", conv.token_for("a", "admin"))
    assert json.loads(out)["turns"][0]["turn_id"] == turn.turn_id
    code, _, err = await kotoba("stats", "--token", conv.token_for("learner-3"))
    assert code == 1 and "PERMISSION_DENIED" in err
    code, _, err = await kotoba("stats")
    assert code == 2 and "KOTOBA_TOKEN" in err
