"""Hypothesis-driven fuzzing of every gRPC method of Tools, Retrieval and Conversations.

Requests are generated from the message descriptors (random and boundary values, huge strings, negative
limits, nested messages), sent with a learner token, an admin token, no token or a garbage token. Only clean
status codes may come back — never UNKNOWN or INTERNAL — and every server stays SERVING. Invalid UTF-8 and
garbage protobuf go out as raw bytes on the wire.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor as FD
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kotoba.v1 import conversations_pb2, retrieval_pb2, tools_pb2
from services.common.auth import auth_metadata

SERVICES = {
    "tools": tools_pb2.DESCRIPTOR.services_by_name["Tools"],
    "retrieval": retrieval_pb2.DESCRIPTOR.services_by_name["Retrieval"],
    "conversations": conversations_pb2.DESCRIPTOR.services_by_name["Conversations"],
}
METHODS = [(svc, m.name) for svc, desc in SERVICES.items() for m in desc.methods]
CLEAN = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
         grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION,
         grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ALREADY_EXISTS}
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))

strings = st.one_of(st.text(max_size=30), st.sampled_from(["", " ", "N5", "N9", "word", "kanji", "sentence", "w:1",
                                                           "word:泳ぐ:およぐ", "../../etc/passwd", "demo-n4",
                                                           "' OR 1=1 --", "\u0000", "🙂" * 10]),
                    st.just("x" * 70_000), st.just("語" * 20_000))
INTS = {FD.TYPE_INT32: (-2**31, 2**31 - 1), FD.TYPE_SINT32: (-2**31, 2**31 - 1), FD.TYPE_SFIXED32: (-2**31, 2**31 - 1),
        FD.TYPE_UINT32: (0, 2**32 - 1), FD.TYPE_FIXED32: (0, 2**32 - 1), FD.TYPE_INT64: (-2**63, 2**63 - 1),
        FD.TYPE_SINT64: (-2**63, 2**63 - 1), FD.TYPE_SFIXED64: (-2**63, 2**63 - 1), FD.TYPE_UINT64: (0, 2**64 - 1),
        FD.TYPE_FIXED64: (0, 2**64 - 1)}


def scalar(field: FD) -> st.SearchStrategy:
    if field.type == FD.TYPE_STRING:
        return strings
    if field.type == FD.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type == FD.TYPE_BOOL:
        return st.booleans()
    if field.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return st.floats(width=32 if field.type == FD.TYPE_FLOAT else 64)
    if field.type == FD.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values] + [999])
    lo, hi = INTS[field.type]
    return st.one_of(st.integers(-3, 3), st.sampled_from([lo, hi, -1, 0, 1, 100, 10_000]), st.integers(lo, hi))


@st.composite
def message(draw, descriptor, cls, depth: int = 0):
    msg = cls()
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.type == FD.TYPE_MESSAGE:
            if depth >= 2 or field.message_type.GetOptions().map_entry:
                continue
            sub_cls = type(getattr(msg, field.name)) if not _repeated(field) else None
            if _repeated(field):
                container = getattr(msg, field.name)
                for _ in range(draw(st.integers(0, 3))):
                    draw(_fill(container.add(), field.message_type, depth + 1))
            else:
                getattr(msg, field.name).CopyFrom(draw(message(field.message_type, sub_cls, depth + 1)))
        elif _repeated(field):
            getattr(msg, field.name).extend(draw(st.lists(scalar(field), max_size=5)))
        else:
            setattr(msg, field.name, draw(scalar(field)))
    return msg


def _repeated(field: FD) -> bool:
    return field.is_repeated


@st.composite
def _fill(draw, target, descriptor, depth):
    target.CopyFrom(draw(message(descriptor, type(target), depth)))
    return target


def _request_class(svc: str, method: str):
    module = {"tools": tools_pb2, "retrieval": retrieval_pb2, "conversations": conversations_pb2}[svc]
    return getattr(module, SERVICES[svc].methods_by_name[method].input_type.name)


def _call(stack, svc: str, method: str, payload: bytes, metadata) -> tuple[grpc.StatusCode, str]:
    path = f"/{SERVICES[svc].full_name}/{method}"
    with grpc.insecure_channel(stack.addr(svc)) as ch:
        rpc = ch.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            rpc(payload, metadata=metadata, timeout=20)
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            return exc.code(), exc.details()


@pytest.fixture(scope="module")
def callers(stack):
    return {
        "learner": auth_metadata(stack.token("fuzz-grpc")),
        "admin": auth_metadata(stack.token("fuzz-grpc-admin", "admin")),
        "none": (),
        "garbage": (("authorization", "Bearer not.a.jwt"),),
    }


@pytest.mark.parametrize(("svc", "method"), METHODS)
def test_fuzzed_requests_get_clean_status_codes(stack, callers, svc, method):
    cls = _request_class(svc, method)
    descriptor = SERVICES[svc].methods_by_name[method].input_type

    @FUZZ
    @given(req=message(descriptor, cls), who=st.sampled_from(sorted(callers)))
    def run(req, who):
        outcome = _call(stack, svc, method, req.SerializeToString(), callers[who])
        assert outcome[0] in CLEAN, f"{svc}.{method} as {who}: {outcome} for {str(req)[:300]!r}"

    run()


def _invalid_utf8_request(descriptor) -> bytes | None:
    """Field 1 (or the first string field, nested if need be) carrying bytes that are not UTF-8."""
    for field in descriptor.fields:
        tag = bytes([(field.number << 3) | 2]) if field.number < 16 else None
        if tag is None:
            continue
        if field.type == FD.TYPE_STRING:
            return tag + b"\x04\xff\xfe\xc3\x28"
        if field.type == FD.TYPE_MESSAGE:
            inner = _invalid_utf8_request(field.message_type)
            if inner is not None:
                return tag + bytes([len(inner)]) + inner
    return None


RAW = [(svc, m) for svc, m in METHODS if _invalid_utf8_request(SERVICES[svc].methods_by_name[m].input_type)]


@pytest.mark.parametrize(("svc", "method"), RAW)
def test_invalid_utf8_on_the_wire_is_invalid_argument(stack, callers, svc, method):
    payload = _invalid_utf8_request(SERVICES[svc].methods_by_name[method].input_type)
    outcome = _call(stack, svc, method, payload, callers["admin"])
    assert outcome[0] in CLEAN, outcome


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=st.binary(min_size=1, max_size=200), svc_method=st.sampled_from(METHODS))
def test_garbage_bytes_never_break_a_server(stack, callers, payload, svc_method):
    """Whatever grpc-python answers for undecodable bytes, the server survives and keeps serving."""
    svc, method = svc_method
    outcome = _call(stack, svc, method, payload, callers["admin"])
    assert outcome[0] != grpc.StatusCode.UNAVAILABLE, outcome


def test_every_server_still_serving_after_fuzzing(stack):
    for svc in SERVICES:
        with grpc.insecure_channel(stack.addr(svc)) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, svc
