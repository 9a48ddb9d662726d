"""Which ONNX operators this tool compiles, and a scan that reports every one it does not.

Supported = the operators the Relax ONNX frontend of the installed TVM converts (read from its
converter table, `tvm.relax.frontend.onnx.onnx_frontend._get_convert_map()`, so a TVM upgrade
updates the set) in the standard domain (or Microsoft's contrib domain for the contrib ops that
table holds), minus `EXCLUDED`: operators the frontend converts but a deployable segmentation
artifact cannot carry (data-dependent output shapes, sequence/optional values, control flow).

The frontend itself stops at the first unsupported op type and names neither nodes nor domains;
`scan_unsupported` walks the whole graph (subgraphs included) first and `check_supported` raises
one UnsupportedOpsError listing every unsupported op type with its count and node names.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import onnx

from deploy.errors import UnsupportedError

STANDARD_DOMAINS = ("", "ai.onnx")
CONTRIB_DOMAIN = "com.microsoft"
DIRECTLY_HANDLED = ("Constant", "If")  # converted outside the frontend's table

_DYNAMIC = "its output shape depends on the data (detection-style post-processing); keep it outside the model"
_SEQUENCE = "sequence values are not tensors: the artifact's outputs must be tensors"
_OPTIONAL = "optional values are not supported in a compiled artifact"
EXCLUDED: dict[str, str] = {
    "NonMaxSuppression": _DYNAMIC,
    "AllClassNMS": _DYNAMIC,
    "NonZero": _DYNAMIC,
    "Unique": _DYNAMIC,
    "Compress": _DYNAMIC,
    "If": "control flow: the compiled graph must be one static dataflow graph",
    **{op: _SEQUENCE for op in ("SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase",
                                "SequenceInsert", "SequenceLength", "SplitToSequence", "ConcatFromSequence")},
    **{op: _OPTIONAL for op in ("Optional", "OptionalHasElement", "OptionalGetElement")},
}


@lru_cache(maxsize=1)
def frontend_ops() -> frozenset[str]:
    """Op types the installed TVM's Relax ONNX frontend converts (its converter table)."""
    from deploy.tvm_env import import_tvm
    import_tvm()
    from tvm.relax.frontend.onnx import onnx_frontend
    return frozenset(onnx_frontend._get_convert_map()) | frozenset(DIRECTLY_HANDLED)


def supported_ops() -> frozenset[str]:
    """Standard-domain op types this tool compiles."""
    return frontend_ops() - frozenset(EXCLUDED)


@dataclass
class UnsupportedOp:
    op_type: str
    domain: str
    reason: str
    nodes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.nodes)

    @property
    def qualified(self) -> str:
        return self.op_type if self.domain in STANDARD_DOMAINS else f"{self.domain}::{self.op_type}"


class UnsupportedOpsError(UnsupportedError):
    """The model uses operators this tool cannot compile; `.ops` lists every one."""

    def __init__(self, message: str, ops: list[UnsupportedOp]):
        super().__init__(message)
        self.ops = ops


def _walk(graph: onnx.GraphProto, where: str = ""):
    """(node, label) for every node, descending into subgraphs (If/Loop/Scan bodies)."""
    for i, node in enumerate(graph.node):
        label = (node.name or f"#{i} ({node.op_type})") + where
        yield node, label
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _walk(attr.g, f" in {node.name or node.op_type}.{attr.name}")
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for k, g in enumerate(attr.graphs):
                    yield from _walk(g, f" in {node.name or node.op_type}.{attr.name}[{k}]")


def _reason(node: onnx.NodeProto, local_functions: set[tuple[str, str]]) -> str | None:
    domain, op = node.domain, node.op_type
    if (domain, op) in local_functions:
        return None  # inlined before import (see deploy.frontend.source.load_onnx)
    if domain in STANDARD_DOMAINS:
        if op in EXCLUDED:
            return EXCLUDED[op]
        if op not in frontend_ops():
            return "TVM's Relax ONNX frontend has no converter for it"
        return None
    if domain == CONTRIB_DOMAIN and op in frontend_ops() and op not in EXCLUDED:
        return None
    return f"custom domain {domain!r}: no converter"


def scan_unsupported(model: onnx.ModelProto) -> list[UnsupportedOp]:
    """Every unsupported (domain, op type) in the model, with the nodes using it, in graph order."""
    local = {(f.domain, f.name) for f in model.functions}
    found: dict[tuple[str, str], UnsupportedOp] = {}
    for node, label in _walk(model.graph):
        reason = _reason(node, local)
        if reason is None:
            continue
        key = (node.domain if node.domain not in STANDARD_DOMAINS else "", node.op_type)
        found.setdefault(key, UnsupportedOp(node.op_type, key[0], reason)).nodes.append(label)
    return list(found.values())


def op_histogram(model: onnx.ModelProto) -> Counter:
    """Op type → node count (subgraphs included), for the compile log."""
    return Counter(n.op_type if n.domain in STANDARD_DOMAINS else f"{n.domain}::{n.op_type}"
                   for n, _ in _walk(model.graph))


def check_supported(model: onnx.ModelProto, path: str | Path, max_names: int = 8) -> None:
    """Raise UnsupportedOpsError naming every unsupported op (type, count, nodes, why)."""
    ops = scan_unsupported(model)
    if not ops:
        return
    lines = []
    for op in ops:
        names = ", ".join(op.nodes[:max_names]) + (f", … and {op.count - max_names} more"
                                                    if op.count > max_names else "")
        lines.append(f"  {op.qualified} ×{op.count} ({names}): {op.reason}")
    total = sum(op.count for op in ops)
    raise UnsupportedOpsError(
        f"{path}: {len(ops)} unsupported operator type{'s' if len(ops) > 1 else ''} "
        f"({total} node{'s' if total > 1 else ''}):\n" + "\n".join(lines), ops)
