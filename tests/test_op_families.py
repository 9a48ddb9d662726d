"""Every op family a segmentation net uses compiles through the whole pipeline (graph preparation,
import, NHWC layout, fp16) and matches onnxruntime — one small ONNX graph per family."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import onnx_graphs as G
from deploy.compiler import compile_build
from deploy.config import load_build_config
from deploy.runtime import Model
from test_compiler import write_build

pytestmark = pytest.mark.slow  # 60 small compiles, ~90 s

C, H, W = 8, 12, 10


def _family(body) -> onnx.ModelProto:
    """conv → body(graph, x) → conv: the op sits between two NHWC convs, as in a real net."""
    g = G.Graph(C, H, W)
    y = body(g, g.conv("input", C, C))
    return g.model(g.conv(y, C, C, k=1))


def _i64(g, values):
    return g.const(np.array(values, "int64"), "i")


def _f32(g, values):
    return g.const(np.asarray(values, "float32"), "f")


FAMILIES = {
    "unary": lambda g, x: g.op("Tanh", [g.op("Abs", [g.op("Exp", [g.op("Neg", [x])])])]),
    "activations": lambda g, x: g.op("HardSwish", [g.op("LeakyRelu", [g.op("Elu", [x])], alpha=0.1)]),
    "silu_gate": lambda g, x: g.op("Mul", [x, g.sigmoid(x)]),
    # MobileNetV3's tails: HardSwish straight after a conv, a HardSigmoid squeeze-excite gate
    "hard_gates": lambda g, x: g.op("Mul", [g.op("HardSwish", [x]),
                                            g.op("HardSigmoid", [g.op("GlobalAveragePool", [x])], alpha=1 / 6)]),
    "prelu": lambda g, x: g.op("PRelu", [x, _f32(g, np.linspace(0.1, 0.3, C).reshape(C, 1, 1))]),
    "clip_where": lambda g, x: g.op("Where", [g.op("Greater", [x, _f32(g, 0.0)]), x,
                                               g.op("Clip", [x, _f32(g, -0.5), _f32(g, 0.5)])]),
    "binary_broadcast": lambda g, x: g.op("Div", [g.op("Sub", [x, _f32(g, np.ones((C, 1, 1)))]),
                                                   _f32(g, np.full((1, C, 1, W), 2.0))]),
    "variadic": lambda g, x: g.op("Mean", [g.op("Sum", [x, x, g.relu(x)]), g.op("Max", [x, g.sigmoid(x)]),
                                           g.op("Min", [x, g.relu(x), g.sigmoid(x)])]),
    "dropout": lambda g, x: g.op("Dropout", [x]),
    "reduce_channels": lambda g, x: g.op("Mul", [x, g.op("ReduceMean", [x], axes=[1], keepdims=1)]),
    "reduce_spatial": lambda g, x: g.op("Add", [x, g.op("ReduceMax", [x], axes=[2, 3], keepdims=1)]),
    "softmax": lambda g, x: g.op("Softmax", [x], axis=1),
    "global_pools": lambda g, x: g.op("Mul", [x, g.sigmoid(g.op("Add", [g.op("GlobalAveragePool", [x]),
                                                                         g.op("GlobalMaxPool", [x])]))]),
    "avg_pool": lambda g, x: g.op("AveragePool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                                  count_include_pad=0),
    "instance_norm": lambda g, x: g.op("InstanceNormalization", [x, _f32(g, np.linspace(0.5, 1.5, C)),
                                                                 _f32(g, np.linspace(-0.1, 0.1, C))]),
    "layer_norm": lambda g, x: g.op("LayerNormalization", [x, _f32(g, np.ones(W)), _f32(g, np.zeros(W))], axis=-1),
    "group_norm": lambda g, x: _group_norm(g, x, groups=2),
    "pad_modes": lambda g, x: _pads(g, x),
    "resize_align_corners": lambda g, x: g.op("MaxPool", [g.resize(x, "align_corners")], kernel_shape=[2, 2],
                                              strides=[2, 2]),
    "split_concat": lambda g, x: g.concat(*reversed([o for o in _split(g, x)])),
    "transpose_reshape": lambda g, x: g.op("Reshape", [g.op("Transpose", [g.op("Reshape", [x, _i64(g, [0, C, H * W])])],
                                                             perm=[0, 2, 1]), _i64(g, [0, C, H, W])]),
    "matmul_attention": lambda g, x: _attention(g, x),
    "depth_to_space": lambda g, x: g.op("SpaceToDepth", [g.op("DepthToSpace", [x], blocksize=2, mode="CRD")],
                                        blocksize=2),
    "depthwise": lambda g, x: g.conv(g.relu(g.conv(x, C, C, groups=C)), C, C, k=3, stride=2, groups=C),
    "grouped": lambda g, x: g.conv(x, C, C, k=3, groups=2, dilation=2),
    "dilated_strided": lambda g, x: g.conv(g.conv(x, C, C, k=3, dilation=2), C, C, k=5, stride=2),
    "expand_tile": lambda g, x: g.op("Add", [x, g.op("Tile", [g.op("ReduceMean", [x], axes=[2], keepdims=1),
                                                              _i64(g, [1, 1, H, 1])])]),
}


def _group_norm(g, x, groups):
    """GroupNorm as torch.onnx writes it at opset 17: InstanceNorm over [N, G, -1], then the affine."""
    grouped = g.op("Reshape", [x, _i64(g, [0, groups, -1])])
    normed = g.op("InstanceNormalization", [grouped, _f32(g, np.ones(groups)), _f32(g, np.zeros(groups))])
    y = g.op("Reshape", [normed, g.op("Shape", [x])])
    return g.op("Add", [g.op("Mul", [y, _f32(g, np.linspace(0.5, 1.5, C).reshape(C, 1, 1))]),
                        _f32(g, np.linspace(-0.1, 0.1, C).reshape(C, 1, 1))])


def _pads(g, x):
    """reflect, edge and constant Pads in a row, sliced back to the input size."""
    for mode, pads in (("reflect", [0, 0, 1, 2, 0, 0, 1, 2]), ("edge", [0, 0, 1, 1, 0, 0, 1, 1]),
                       ("constant", [0, 0, 0, 1, 0, 0, 1, 0])):
        x = g.op("Pad", [x, _i64(g, pads)], mode=mode)
    return g.op("Slice", [x, _i64(g, [0, 0]), _i64(g, [H, W]), _i64(g, [2, 3])])


def _split(g, x):
    outs = [g._name("split") for _ in range(2)]
    g.nodes.append(helper.make_node("Split", [x, _i64(g, [C // 2, C // 2])], outs, axis=1))
    return outs


def _attention(g, x):
    """Self-attention over the H*W positions, as transformer heads write it (MatMul, Softmax)."""
    seq = g.op("Transpose", [g.op("Reshape", [x, _i64(g, [0, C, H * W])])], perm=[0, 2, 1])   # N, HW, C
    q = g.op("MatMul", [seq, _f32(g, np.eye(C) * 0.5)])
    att = g.op("Softmax", [g.op("MatMul", [q, g.op("Transpose", [seq], perm=[0, 2, 1])])], axis=-1)
    out = g.op("Transpose", [g.op("MatMul", [att, seq])], perm=[0, 2, 1])
    return g.op("Add", [x, g.op("Reshape", [out, _i64(g, [0, C, H, W])])])


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_op_family_compiles_and_matches(family, dtype, tmp_path):
    model = _family(FAMILIES[family])
    prefix = compile_build(load_build_config(write_build(tmp_path, model, family, dtype=dtype)), progress=False)
    schedules = next(line for line in (prefix.parent / "compile.log").read_text().splitlines()
                     if "optimize: schedules" in line)
    assert "none×" not in schedules, schedules   # every kernel got a schedule (at worst the generic one)
    if family == "matmul_attention":
        assert "matmul×" in schedules
    m = Model(prefix)
    x = np.random.default_rng(0).standard_normal((2, C, H, W)).astype("float32")
    ref = G.ort_run(model, x)[0]
    got = m.run({"input": x})[0]
    scale = max(float(np.abs(ref).max()), 1.0)
    assert float(np.abs(got - ref).max()) / scale < (1e-4 if dtype == "fp32" else 2e-2), family


@pytest.mark.parametrize("c,groups,stride", [(48, 48, 1), (96, 96, 2), (24, 24, 1), (64, 4, 1), (36, 3, 2)])
def test_grouped_convs_get_the_packed_kernel(c, groups, stride, tmp_path):
    """Depthwise and grouped convs (MobileNet/EfficientNet/ResNeXt encoders) take the register-tiled
    kernel at channel counts that are and are not multiples of the vector width."""
    g = G.Graph(c, 14, 13)
    model = g.model(g.relu(g.conv("input", c, c, k=3, stride=stride, groups=groups)))
    prefix = compile_build(load_build_config(write_build(tmp_path, model, "grp")), progress=False)
    x = np.random.default_rng(1).standard_normal((2, c, 14, 13)).astype("float32")
    ref, got = G.ort_run(model, x)[0], Model(prefix).run({"input": x})[0]
    assert float(np.abs(got - ref).max()) / max(float(np.abs(ref).max()), 1.0) < 1e-4
    assert "conv×1" in (prefix.parent / "compile.log").read_text()


def test_a_graph_the_layout_pass_cannot_take_compiles_in_nchw(tmp_path, monkeypatch):
    """Should relax's ConvertLayout fail on some op, the compile keeps NCHW (correct, slower) and
    says so in compile.log, instead of ending in a TVM traceback."""
    from tvm import relax

    def broken(_layouts):
        @tvm.transform.module_pass(opt_level=0, name="BrokenConvertLayout")
        def _pass(mod, _ctx):
            raise tvm.error.InternalError("Invalid SLayout: a stand-in for an op the pass cannot convert")
        return _pass

    import tvm
    monkeypatch.setattr(relax.transform, "ConvertLayout", broken)
    model = G.mini_unet(c=8, h=16, w=16)
    prefix = compile_build(load_build_config(write_build(tmp_path, model, "nchw")), progress=False)
    log = (prefix.parent / "compile.log").read_text()
    assert "the graph stays NCHW" in log and "Invalid SLayout" in log
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype("float32")
    for got, ref in zip(Model(prefix).run({"input": x}), G.ort_run(model, x)):
        assert float(np.abs(got - ref).max()) < 1e-4
