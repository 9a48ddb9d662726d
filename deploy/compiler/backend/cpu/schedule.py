"""Hand schedules for the PrimFuncs the fast path produces after FuseOps/FuseTIR.

Dispatcher: a PrimFunc whose anchor block carries a "segdeploy.kind" annotation (conv2d.py's
direct conv, winograd.py's GEMM) gets that schedule; every other one (pooling, resize, concat,
elementwise, layout transforms, TOPI fallbacks) gets `generic`. A schedule that fails falls
back to `generic` on a fresh copy (primitives check legality: slow at worst, never wrong).
"""
from __future__ import annotations

import tvm
import tvm.sym
from tvm import s_tir, tirx

from . import int8
from .packing import PAD_BLOCK
from .winograd import TILE

WB, CB, KIND = "segdeploy.wb", "segdeploy.cb", "segdeploy.kind"


def _blocks(sch: s_tir.Schedule):
    return sch.get_child_blocks(sch.get_sblock("root"))


def _static(extent) -> int | None:
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def _inline_all(sch: s_tir.Schedule, keep=(), reverse: bool = True) -> None:
    """Inline every injective block into its consumer (or, with `reverse`, its producer)."""
    prims = (sch.compute_inline, sch.reverse_compute_inline) if reverse else (sch.compute_inline,)

    def step() -> bool:
        for b in _blocks(sch):
            if sch.get(b).name_hint in keep:
                continue
            for prim in prims:
                try:
                    prim(b)
                    return True
                except s_tir.ScheduleError:
                    pass
        return False
    while step():
        pass


def _spatial_reduce(sch, block):
    """Loops of a (fresh, te-made) block split into spatial and reduction lists."""
    loops = sch.get_loops(block)
    kinds = [iv.iter_type for iv in sch.get(block).iter_vars]
    loops = loops[len(loops) - len(kinds):]
    sp = [lp for lp, k in zip(loops, kinds) if k == tirx.IterVar.DataPar]
    rd = [lp for lp, k in zip(loops, kinds) if k != tirx.IterVar.DataPar]
    return sp, rd


def _vectorize_inner(sch, loop, lanes: int) -> None:
    ext = _static(sch.get(loop).extent)
    if ext is None or ext == 1:
        return
    if ext > lanes and ext % lanes == 0:
        loop = sch.split(loop, [None, lanes])[1]
    elif ext > 4 * lanes:
        return
    sch.vectorize(loop)


def _segments(sch, block) -> list[int]:
    """Channel offsets where a concat (possibly with inlined producers) switches source,
    from its read regions `X[..., c - offset]`: [0, off_1, ..., C]."""
    iv = sch.get(block).iter_vars[-1]
    ext, ana, offs = _static(iv.dom.extent), tvm.sym.Analyzer(), {0}
    for region in sch.get(block).reads:
        d = ana.simplify(region.region[-1].min - iv.var)
        if isinstance(d, tirx.IntImm) and 0 < -d.value < ext:
            offs.add(-d.value)
    return [*sorted(offs), ext]


def _reduces_contiguous(sch, block) -> bool:
    """Whether a reduction runs along the innermost (contiguous) dimension of what it reads:
    then its spatial loops go parallel and the reduction stays innermost; moving it outward (as
    for an NHWC mean over H, W, where the channels are contiguous) would read with a stride."""
    rd_vars = {iv.var.name for iv in sch.get(block).iter_vars if iv.iter_type != tirx.IterVar.DataPar}

    def names(expr) -> set[str]:
        return {v.name for v in tirx.analysis.undefined_vars(expr)}
    reads = [r for r in sch.get(block).reads if any(rd_vars & names(d.min) for d in r.region)]
    return bool(reads) and all(rd_vars & names(r.region[-1].min) for r in reads)


def _row_reduction(sch, block, sp, rd, lanes: int) -> None:
    """Rows in parallel; a single contiguous reduction is vectorized through `lanes` partial
    accumulators (rfactor), added up per row at the end."""
    fused = sch.fuse(*sp) if len(sp) > 1 else sp[0]
    sch.parallel(fused)
    ext = _static(sch.get(rd[-1]).extent)
    if len(rd) != 1 or ext is None or ext % lanes or ext <= lanes:
        sch.decompose_reduction(block, rd[0])
        return
    _, k_i = sch.split(rd[0], [None, lanes])
    rf = sch.rfactor(k_i, factor_axis=len(sch.get(block).iter_vars) - 1)
    k_o, lane = sch.get_loops(rf)[-2:]
    sch.vectorize(lane)
    sch.decompose_reduction(rf, k_o)
    sch.decompose_reduction(block, sch.get_loops(block)[-1])


def generic(sch: s_tir.Schedule, _anchor, lanes: int) -> None:
    """Inline, then per block: parallel over the fused outer spatial loops, reductions next,
    the innermost spatial loop (NHWC channels) last and vectorized; a concat's channel loop is
    first partitioned at its sources' boundaries (one copy loop per source, no selects)."""
    _inline_all(sch)
    for block in _blocks(sch):
        sp, rd = _spatial_reduce(sch, block)
        if not sp:
            continue
        if rd and _reduces_contiguous(sch, block):   # softmax, LayerNorm: rows stay rows
            _row_reduction(sch, block, sp, rd, lanes)
            continue
        if rd:
            sch.reorder(*sp[:-1], *rd, sp[-1])
        if len(sp) > 1:
            sch.parallel(sch.fuse(*sp[:-1]))
        seg = _segments(sch, block) if sch.get(block).name_hint.startswith("T_concat") else []
        if len(seg) > 2 and not rd and all(v % lanes == 0 for v in seg):
            c_o, c_i = sch.split(sp[-1], [None, lanes])
            sch.vectorize(c_i)
            sch.loop_partition(c_o, [(b - a) // lanes for a, b in zip(seg, seg[1:-1])] + [None])
        else:
            _vectorize_inner(sch, sp[-1], lanes)
        if rd:
            sch.decompose_reduction(block, rd[0])


def _downstream(sch, block) -> list:
    """Blocks fed (transitively) by `block`, producers first."""
    out, seen, todo = [], set(), list(sch.get_consumers(block))
    while todo:
        b = todo.pop(0)
        if sch.get(b).name_hint not in seen:
            seen.add(sch.get(b).name_hint)
            out.append(b)
            todo += list(sch.get_consumers(b))
    return out


def conv(sch: s_tir.Schedule, block, lanes: int) -> None:
    """Register-tiled direct conv: loops co_o, n, h | w_o | reductions | w_i (unrolled),
    co_i (vectorized); the accumulator tile (wb x cb) is local, the epilogue runs per tile and
    the padded/converted input rows are produced per (co_o, n, h) iteration. With cb == 1 (few
    output channels) the tile is wb x CI-lanes partial sums, added up by the epilogue. The int8
    kind (int8.py) has its last reduction (4 input channels) inside co_i, tensorized with VNNI."""
    ann = sch.get(block).annotations
    wb, cb = int(ann[WB]), int(ann[CB])
    vnni = str(ann[KIND]) == int8.KIND
    _inline_all(sch, keep={sch.get(b).name_hint for b in [block, *sch.get_producers(block)]})
    pads = sch.get_producers(block)
    consumers = _downstream(sch, block) or [sch.cache_write(block, 0, "local")]
    (n, h, w, co, *lane), rd = _spatial_reduce(sch, block)
    w_o, w_i = sch.split(w, [None, wb])
    if lane:
        sch.reorder(n, h, w_o, co, *rd, w_i, lane[0])
        fused, vec = sch.fuse(n, h), lane[0]
    else:
        co_o, vec = sch.split(co, [None, cb])
        inner = rd[-1:] if vnni else []
        sch.reorder(co_o, n, h, w_o, *rd[:len(rd) - len(inner)], w_i, vec, *inner)
        fused = sch.fuse(co_o, n, h)
    for c in consumers:
        sch.reverse_compute_at(c, w_o)
        if sch.get(c).iter_vars[-1].iter_type == tirx.IterVar.DataPar:  # (not the lane sum)
            _vectorize_inner(sch, sch.get_loops(c)[-1], lanes)
    sch.set_scope(block, 0, "local")
    for p in pads:
        sch.compute_at(p, fused)
        _vectorize_inner(sch, sch.get_loops(p)[-1], lanes)
    sch.parallel(fused)
    sch.unroll(w_i)
    if vnni:
        int8.vnni_tile(sch, block, vec, rd[0])
        return
    sch.vectorize(vec)   # before decompose_reduction (fails after)
    sch.decompose_reduction(block, rd[0])


def _transform(sch, block, unroll: int, lanes: int) -> None:
    """A Winograd transform stage under its tile loop: loops (..., tile, u, v, c) with a Select
    on u (unroll=0) or v (unroll=1): that axis is unrolled (each element then is a short sum with
    constant coefficients), the channels are vectorized innermost."""
    tile, u, v, c = sch.get_loops(block)[-4:]
    sel, other = (u, v) if unroll == 0 else (v, u)
    c_o, c_i = _split_lanes(sch, c, lanes)
    sch.reorder(tile, other, *([c_o, sel, c_i] if c_i is not None else [sel, c_o]))
    sch.unroll(sel)
    _vectorize_inner(sch, c_i if c_i is not None else c_o, lanes)


def _split_lanes(sch, loop, lanes):
    ext = _static(sch.get(loop).extent)
    if ext is not None and ext > lanes and ext % lanes == 0:
        return sch.split(loop, [None, lanes])
    return loop, None


def winograd(sch: s_tir.Schedule, block, lanes: int) -> None:
    """Per (co_o, n, tile row) task and block of `wb` tiles: input transform (V1, V), the 36
    GEMMs with the conv micro-kernel (rc | tiles unrolled, co vectorized), output transform
    (Y1, Y) and the epilogue; the loop nest hangs off the epilogue (output) block."""
    ann = sch.get(block).annotations
    wb, cb = int(ann[WB]), int(ann[CB])
    names = {sch.get(b).name_hint: b for b in _blocks(sch)}
    y, y1, v, v1, pad = (names[k] for k in ("winograd_y", "winograd_y1", "winograd_v",
                                             "winograd_v1", PAD_BLOCK))
    _inline_all(sch, keep={sch.get(b).name_hint for b in (block, y, y1, v, v1, pad)},
                reverse=False)
    (out,) = sch.get_consumers(y)   # (n, h, w, co): the epilogue reads Y by tile arithmetic
    (n, h, w, co), _ = _spatial_reduce(sch, out)
    t, r = sch.split(h, [None, TILE])
    s_o, w_i = sch.split(w, [None, wb * TILE])
    co_o, co_i = sch.split(co, [None, cb])
    sch.reorder(co_o, n, t, s_o, r, w_i, co_i)
    _vectorize_inner(sch, co_i, lanes)
    stages = [y, y1, block, v, v1]
    fused = sch.fuse(co_o, n, t)
    for b in stages:
        sch.compute_at(b, s_o)
    sch.compute_at(pad, fused)
    _vectorize_inner(sch, sch.get_loops(pad)[-1], lanes)
    for b, sel in ((v1, 1), (v, 0), (y1, 0), (y, 1)):   # Select axis of each transform
        _transform(sch, b, sel, lanes)
    s, xi, nu, c, rc = sch.get_loops(block)[-5:]
    sch.reorder(xi, nu, rc, s, c)
    sch.set_scope(block, 0, "local")
    sch.parallel(fused)
    sch.unroll(s)
    sch.vectorize(c)
    sch.decompose_reduction(block, rc)


def _divisor(ext: int | None, options) -> int | None:
    return next((b for b in options if ext is not None and ext % b == 0), None)


def matmul(sch: s_tir.Schedule, block, lanes: int) -> None:
    """TOPI's matmul block (relax.matmul: attention, transformer MLPs): the conv micro-kernel on
    (i, j) — loops batch, i_o | j_o | k | i_i (unrolled), j_i (vectorized), accumulators local,
    the epilogue per tile. Needs static i, j with a register-tile divisor (else: generic)."""
    _inline_all(sch, keep={sch.get(b).name_hint for b in [block, *sch.get_producers(block)]})
    consumers = _downstream(sch, block) or [sch.cache_write(block, 0, "local")]
    (*batch, i, j), (k,) = _spatial_reduce(sch, block)
    ib = _divisor(_static(sch.get(i).extent), (6, 4, 3, 2, 1))
    jb = _divisor(_static(sch.get(j).extent), (4 * lanes, 2 * lanes, lanes, lanes // 2, lanes // 4))
    if ib is None or jb is None:
        raise ValueError("matmul: no register tile divides the output")
    i_o, i_i = sch.split(i, [None, ib])
    j_o, j_i = sch.split(j, [None, jb])
    sch.reorder(*batch, i_o, j_o, k, i_i, j_i)
    fused = sch.fuse(*batch, i_o) if batch else i_o
    for c in consumers:
        sch.reverse_compute_at(c, j_o)
        _vectorize_inner(sch, sch.get_loops(c)[-1], lanes)
    sch.set_scope(block, 0, "local")
    sch.parallel(fused)
    sch.unroll(i_i)
    sch.vectorize(j_i)
    sch.decompose_reduction(block, k)


SCHEDULES = {"conv": conv, int8.KIND: conv, "winograd": winograd, "matmul": matmul, "generic": generic}


def classify(sch: s_tir.Schedule):
    """(kind, anchor block) of a PrimFunc: the "segdeploy.kind" annotation of its one anchor block
    (set by packing.tile_attrs for the direct, int8 and Winograd-GEMM kernels) when SCHEDULES has a
    schedule of that kind; "matmul" for the one block of relax.matmul's TOPI legalization;
    ("generic", None) when no block, or more than one, carries a kind."""
    matmuls = [b for b in _blocks(sch) if sch.get(b).name_hint == "matmul"]
    if len(matmuls) == 1:   # relax.matmul's TOPI legalization
        return "matmul", matmuls[0]
    anchors = [b for b in _blocks(sch) if KIND in sch.get(b).annotations]
    if len(anchors) != 1 or str(sch.get(anchors[0]).annotations[KIND]) not in SCHEDULES:
        return "generic", None
    return str(sch.get(anchors[0]).annotations[KIND]), anchors[0]


def schedule_primfunc(func: tirx.PrimFunc, lanes: int) -> tirx.PrimFunc:
    """Schedule one PrimFunc; the kind applied is recorded in attr "segdeploy.schedule"."""
    kind, _ = classify(s_tir.Schedule(func))
    for k in dict.fromkeys([kind, "generic"]):
        sch = s_tir.Schedule(func)
        try:
            SCHEDULES[k](sch, classify(sch)[1], lanes)
            return sch.mod["main"].with_attr("segdeploy.schedule", k)
        except Exception:  # noqa: BLE001 (any failure: use the next, simpler schedule)
            continue
    return func.with_attr("segdeploy.schedule", "none")


def SchedulePrimFuncs(lanes: int = 16) -> tvm.transform.Pass:  # noqa: N802 (pass naming)
    @tvm.transform.module_pass(opt_level=0, name="segdeploy.SchedulePrimFuncs")
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        out = tvm.IRModule(mod.functions, attrs=mod.attrs)
        for gv, f in mod.functions.items():
            if isinstance(f, tirx.PrimFunc) and not f.attrs.get("tir.is_scheduled", False):
                out[gv] = schedule_primfunc(f, lanes).with_attr("tir.is_scheduled", True)
        return out
    return _pass
