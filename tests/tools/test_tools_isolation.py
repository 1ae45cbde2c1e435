"""Property: whatever a request says (user_id args, the other learner's page tokens), one learner's data
never reaches the other. Random requests for two demo learners through the real server."""

from __future__ import annotations

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kotoba.v1 import tools_pb2 as t
from services.tools.declarations import request_for

A, B = "demo-n5", "demo-advanced"
LEARNER_FUNCTIONS = ["get_user_progress", "get_user_plan", "get_user_learned_items", "get_user_reviewable_items"]


def _ids(client, table: str, user: str) -> set[str]:
    ids: set[str] = set()
    for page in client.get_paginator("query").paginate(
            TableName=table, KeyConditionExpression="userId = :u", ProjectionExpression="itemId",
            ExpressionAttributeValues={":u": {"S": user}}):
        ids.update(r["itemId"]["S"] for r in page["Items"])
    return ids


args_strategy = st.fixed_dictionaries({}, optional={
    "user_id": st.sampled_from([A, B, "#catalog", "admin"]),
    "userId": st.sampled_from([A, B]),
    "entity_type": st.sampled_from(["words", "kanji", "kana", "sentences", ""]),
    "level": st.sampled_from(["N5", "N4", "N3", ""]),
    "group": st.sampled_from(["N5", "N2", "all"]),
    "limit": st.integers(min_value=0, max_value=120),
    "hours": st.integers(min_value=0, max_value=200),
    "use_foreign_token": st.booleans(),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(me=st.sampled_from([A, B]), function=st.sampled_from(LEARNER_FUNCTIONS), args=args_strategy)
def test_nothing_of_one_learner_reaches_the_other(tools_env, me, function, args):
    other = B if me == A else A
    mine = _ids(tools_env.client, tools_env.prefix + "progress", me)
    theirs = _ids(tools_env.client, tools_env.prefix + "progress", other) - mine
    foreign = args.pop("use_foreign_token", False)
    call_args = dict(args)
    if foreign and function == "get_user_learned_items":
        page = tools_env.stub.GetUserLearnedItems(t.GetUserLearnedItemsRequest(limit=3),
                                                  metadata=tools_env.md(other))
        call_args["page_token"] = page.next_page_token
    request = request_for(function, call_args)
    method = getattr(tools_env.stub, {"get_user_progress": "GetUserProgress", "get_user_plan": "GetUserPlan",
                                      "get_user_learned_items": "GetUserLearnedItems",
                                      "get_user_reviewable_items": "GetUserReviewableItems"}[function])
    try:
        reply = method(request, metadata=tools_env.md(me))
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
        assert other not in exc.details()
        return
    if foreign and function == "get_user_learned_items" and call_args.get("page_token"):
        raise AssertionError("another learner's page token was accepted")
    ids = set()
    if hasattr(reply, "items"):
        ids = {entry.item.id for entry in reply.items}
    assert ids <= mine and not ids & theirs
    assert other not in str(reply)


def test_progress_of_two_learners_differs_and_follows_the_token(tools_env):
    a = tools_env.stub.GetUserProgress(request_for("get_user_progress", {"user_id": B}), metadata=tools_env.md(A))
    b = tools_env.stub.GetUserProgress(request_for("get_user_progress", {"user_id": A}), metadata=tools_env.md(B))
    assert sum(lp.learned for lp in a.levels) < sum(lp.learned for lp in b.levels)
