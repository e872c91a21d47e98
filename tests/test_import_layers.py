"""The import-direction contract of ARCHITECTURE.md: an import points up the table, never down."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "polymodal"

# Layer ranks, bottom first; a module may import polymodal modules of a strictly lower rank (and its own package).
# viz (pictures of values) sits just below retrieval and eval, which draw their results and reports with it;
# pipeline (a model with its tokenizers, generation in one call) sits below eval, which evaluates through it.
# eval sits above retrieval, whose gallery index and recall@k score its retrieval task.
# hub (a local path or a Hub repo id -> a local folder) sits just above config: every from_pretrained (tokenizers,
# model, pipeline) resolves names through it, so it must be below all of them; it imports nothing of polymodal.
RANK = {"modalities": 0, "config": 1, "hub": 1.5, "nn": 2, "tokenizers": 3, "data": 4, "model": 5, "generation": 6,
        "viz": 7, "retrieval": 7.5, "eval": 7.75, "pipeline": 7.25, "serve": 7.9, "train": 8, "interop": 9, "cli": 10,
        "__main__": 11}
# Narrower rules stated in the table.
ONLY = {"nn": set(), "model": {"nn", "modalities", "config", "hub", "data.batch"}}


def _layer(module: str) -> str:
    return module.split(".")[0]


def _imports(path: Path) -> list[str]:
    rel = path.relative_to(PKG).with_suffix("")
    here = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                target = ".".join(base + ([node.module] if node.module else []))
                if not node.module:
                    found += [".".join(base + [a.name]) for a in node.names]
                    continue
                found.append(target)
            elif node.module and node.module.startswith("polymodal"):
                found.append(node.module.removeprefix("polymodal").lstrip("."))
        elif isinstance(node, ast.Import):
            found += [a.name.removeprefix("polymodal").lstrip(".") for a in node.names
                      if a.name.startswith("polymodal")]
    return [f for f in found if f]


def test_imports_point_up_the_table():
    violations = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).with_suffix("")
        if rel.name == "__init__" and len(rel.parts) == 1:
            continue
        layer = rel.parts[0]
        assert layer in RANK, f"{rel}: module not placed in the layer table of test_import_layers.py"
        for target in _imports(path):
            tl = _layer(target)
            if tl == layer:
                continue
            if tl not in RANK:
                violations.append(f"{rel} imports unknown polymodal module {target}")
            elif layer in ONLY and not any(target == o or target.startswith(o + ".") or tl == o
                                           and "." not in o for o in ONLY[layer]):
                violations.append(f"{rel} imports {target}: {layer}/ may import only {sorted(ONLY[layer])}")
            elif RANK[tl] >= RANK[layer]:
                violations.append(f"{rel} imports {target}, which is not below it")
    assert not violations, "\n".join(violations)


def test_the_contract_catches_a_violation(tmp_path):
    bad = PKG / "model" / "_contract_probe.py"
    bad.write_text("from ..train import loop\n")
    try:
        try:
            test_imports_point_up_the_table()
        except AssertionError as e:
            assert "_contract_probe" in str(e)
        else:
            raise AssertionError("a model/ -> train/ import was not caught")
    finally:
        bad.unlink()
