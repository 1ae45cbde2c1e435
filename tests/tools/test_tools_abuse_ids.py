"""Issue 15, finding 5: an oversized item id was reported as UNAVAILABLE (DynamoDB refused the key, and every
store error looked like an outage), telling the caller to retry a request that can never succeed."""

from __future__ import annotations

import grpc
import pytest

from kotoba.v1 import tools_pb2 as t


@pytest.mark.parametrize("call", [
    lambda s, md: s.GetWordDetails(t.GetWordDetailsRequest(id="word:" + "x" * 5000), metadata=md, timeout=10),
    lambda s, md: s.GetWordDetails(t.GetWordDetailsRequest(id="word:" + "語" * 1000), metadata=md, timeout=10),
    lambda s, md: s.GetSentenceDetails(t.GetSentenceDetailsRequest(id="9" * 5000), metadata=md, timeout=10),
    lambda s, md: s.GetKanjiDetails(t.GetKanjiDetailsRequest(character="語" * 5000), metadata=md, timeout=10),
])
def test_oversized_item_ids_are_invalid_argument(tools_env, call):
    with pytest.raises(grpc.RpcError) as err:
        call(tools_env.stub, tools_env.md("demo-n5"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.value.code(), err.value.details())
