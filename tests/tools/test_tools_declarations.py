"""The declarations sent to Gemini match what the Tools service accepts."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor

from kotoba.v1 import tools_pb2
from services.tools.declarations import (
    FUNCTION_DECLARATIONS,
    REQUEST_FOR_FUNCTION,
    RPC_FOR_FUNCTION,
    request_for,
)

EXPECTED = {"search_words", "get_word_details", "get_kanji_details", "get_sentence_details", "get_user_progress",
            "get_user_plan", "get_user_learned_items", "get_user_reviewable_items"}
JSON_TYPE = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_INT32: "integer",
    FieldDescriptor.TYPE_INT64: "integer",
    FieldDescriptor.TYPE_BOOL: "boolean",
    FieldDescriptor.TYPE_FLOAT: "number",
    FieldDescriptor.TYPE_DOUBLE: "number",
}
SERVICE = tools_pb2.DESCRIPTOR.services_by_name["Tools"]


def test_names_are_exactly_the_agreed_ones():
    names = [d["name"] for d in FUNCTION_DECLARATIONS]
    assert sorted(names) == sorted(EXPECTED) and len(names) == len(set(names))
    assert set(RPC_FOR_FUNCTION) == EXPECTED
    assert "get_user_context" not in names  # the gateway calls it at session start; never the model


@pytest.mark.parametrize("decl", FUNCTION_DECLARATIONS, ids=lambda d: d["name"])
def test_parameters_are_request_fields_with_matching_types(decl):
    method = SERVICE.methods_by_name[RPC_FOR_FUNCTION[decl["name"]]]
    request = method.input_type
    assert request.name == REQUEST_FOR_FUNCTION[decl["name"]]
    params = decl["parameters"]
    assert params["type"] == "object"
    assert len(decl["description"]) > 60
    for name, schema in params["properties"].items():
        assert name in request.fields_by_name, f"{decl['name']}.{name} is not a field of {request.name}"
        field = request.fields_by_name[name]
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
        if repeated:
            assert schema["type"] == "array" and schema["items"]["type"] == JSON_TYPE[field.type]
        else:
            assert schema["type"] == JSON_TYPE[field.type], f"{decl['name']}.{name}"
        assert schema.get("description")
    assert set(params.get("required", [])) <= set(params["properties"])
    # No request field is left undeclared (the model could not set it).
    assert set(request.fields_by_name) == set(params["properties"])


def test_every_mapped_rpc_exists_and_args_parse():
    for rpc in RPC_FOR_FUNCTION.values():
        assert rpc in SERVICE.methods_by_name
    req = request_for("get_user_learned_items", {"entity_type": "words", "limit": 5, "user_id": "someone-else"})
    assert req.entity_type == "words" and req.limit == 5
    assert request_for("get_user_plan", {}).hours == 0
