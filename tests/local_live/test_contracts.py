"""The gateway and the local Live engine agree: the engine calls only declared functions and parses only
the context blocks the gateway writes (services/tools/declarations.py, services/common/contracts.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from kotoba.v1 import tools_pb2
from services.common import contracts
from services.gateway import prompts, rag
from services.local_live.brain.context import Learner, TurnInput
from services.tools.declarations import DECLARED_NAMES, FUNCTION_DECLARATIONS, SEARCH_DICTIONARY

SERVICES = Path(__file__).resolve().parents[2] / "services"
ENGINE = SERVICES / "local_live"
GATEWAY = SERVICES / "gateway"
TAG = re.compile(r"<(/?)([a-z][a-z-]*-context)>")


def _strings(folder: Path) -> list[tuple[Path, ast.Constant]]:
    found = []
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append((path, node))
    return found


def _called_names() -> set[tuple[str, str]]:
    """Function names the engine asks the client to run: Call("name", …), "name" in self.declared,
    _needs("name"), call.name == "name"."""
    names = set()
    for path in ENGINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func
                callee = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if callee in ("Call", "_needs") and isinstance(node.args[0].value, str):
                    names.add((f"{path.name}:{node.lineno}", node.args[0].value))
            elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant):
                right = node.comparators[0]
                if (isinstance(node.ops[0], ast.In | ast.NotIn) and isinstance(right, ast.Attribute)
                        and right.attr == "declared" and isinstance(node.left.value, str)):
                    names.add((f"{path.name}:{node.lineno}", node.left.value))
            elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and node.left.attr == "name":
                for right in node.comparators:
                    if isinstance(right, ast.Constant) and isinstance(right.value, str):
                        names.add((f"{path.name}:{node.lineno}", right.value))
    return names


def test_the_engine_calls_only_declared_functions():
    called = _called_names()
    assert {name for _, name in called} >= {"search_words", "search_dictionary", "get_word_details"}
    undeclared = sorted((where, name) for where, name in called if name not in DECLARED_NAMES)
    assert not undeclared, f"the engine calls functions nobody declares: {undeclared}"


def test_search_dictionary_is_declared_with_the_tools_functions():
    assert SEARCH_DICTIONARY["name"] == "search_dictionary"
    assert DECLARED_NAMES == {d["name"] for d in FUNCTION_DECLARATIONS} | {"search_dictionary"}


def test_the_engine_parses_only_blocks_the_gateway_writes():
    named = {m.group(2) for _, node in _strings(GATEWAY) for m in TAG.finditer(node.value)}
    assert named <= set(contracts.BLOCK_TAGS), f"the gateway names blocks contracts does not define: {named}"
    parsed = {m.group(2) for _, node in _strings(ENGINE) for m in TAG.finditer(node.value)}
    assert parsed <= set(contracts.BLOCK_TAGS), f"the engine looks for blocks nobody writes: {parsed}"


def test_blocks_the_gateway_writes_read_back_in_the_engine():
    ctx = tools_pb2.GetUserContextResponse(summary="Knows 猫.")
    ctx.settings.base_level = "N4"
    ctx.settings.display_name = "Aiko"
    learner = Learner.from_system_instruction(prompts.system_instruction(ctx, "ja", "text"))
    assert (learner.language, learner.base_level, learner.display_name, learner.summary) == ("ja", "N4", "Aiko",
                                                                                            "Knows 猫.")
    item = {"id": "word:猫:ねこ", "written": "猫", "reading": "ねこ", "meanings": ["cat"]}
    found = rag.Retrieved(items=[item], available=True)
    turn = TurnInput.from_texts([part.text for part in rag.user_turn(found, "What is 猫?").parts])
    assert (turn.text, turn.items, turn.has_context_block, turn.context_unavailable) == ("What is 猫?", [item],
                                                                                        True, False)
    turn = TurnInput.from_texts([part.text for part in rag.user_turn(rag.Retrieved(), "neko?").parts])
    assert (turn.text, turn.items, turn.context_unavailable) == ("neko?", [], True)


def test_format_block_knows_only_the_agreed_tags():
    assert contracts.format_block(contracts.KOTOBA_CONTEXT, {"items": []}) == \
        '<kotoba-context>\n{"items": []}\n</kotoba-context>'
    try:
        contracts.format_block("other-context", {})
    except ValueError:
        pass
    else:
        raise AssertionError("an unknown tag was formatted")
