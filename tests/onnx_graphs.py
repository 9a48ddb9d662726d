"""Small ONNX graphs built with onnx.helper, for backend/compiler tests (no torch needed).

Every builder returns an `onnx.ModelProto` (opset 17) with one NCHW float32 input named `input`
whose batch dim is symbolic ("N") unless `batch` is given, and seeded random weights.
`ort_run(model, x)` runs onnxruntime as the reference.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class Graph:
    """Tiny graph builder: each op method appends a node and returns its output name."""

    def __init__(self, cin: int, h: int, w: int, batch: int | str = "N", seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.k = [], [], 0
        self.inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, cin, h, w])
        self.batch = batch

    def _name(self, p: str) -> str:
        self.k += 1
        return f"{p}{self.k}"

    def const(self, arr: np.ndarray, p: str = "c") -> str:
        name = self._name(p)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def conv(self, x, cin, cout, k=3, stride=1, pad=None, dilation=1, groups=1, bias=True):
        pad = dilation * (k - 1) // 2 if pad is None else pad
        fan_in = cin // groups * k * k
        w = self.rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin // groups, k, k)).astype("float32")
        ins = [x, self.const(w, "w")]
        if bias:
            ins.append(self.const(self.rng.normal(0, 0.1, cout).astype("float32"), "b"))
        return self.op("Conv", ins, kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4,
                       dilations=[dilation] * 2, group=groups)

    def bn(self, x, c):
        r = self.rng
        p = [r.uniform(0.5, 1.5, c), r.normal(0, 0.1, c), r.normal(0, 0.1, c), r.uniform(0.5, 1.5, c)]
        return self.op("BatchNormalization", [x] + [self.const(a.astype("float32"), "bn") for a in p],
                       epsilon=1e-5)

    def cbr(self, x, cin, cout):
        return self.relu(self.bn(self.conv(x, cin, cout), cout))

    def relu(self, x):
        return self.op("Relu", [x])

    def sigmoid(self, x):
        return self.op("Sigmoid", [x])

    def add(self, a, b):
        return self.op("Add", [a, b])

    def concat(self, *xs):
        return self.op("Concat", list(xs), axis=1)

    def maxpool(self, x, k=2, s=2, ceil_mode=0):
        return self.op("MaxPool", [x], kernel_shape=[k, k], strides=[s, s], ceil_mode=ceil_mode)

    def conv_transpose(self, x, cin, cout, k=2, stride=2, pad=0, output_padding=0, bias=True):
        w = self.rng.normal(0, np.sqrt(1.0 / cin), (cin, cout, k, k)).astype("float32")
        ins = [x, self.const(w, "w")]
        if bias:
            ins.append(self.const(self.rng.normal(0, 0.1, cout).astype("float32"), "b"))
        return self.op("ConvTranspose", ins, kernel_shape=[k, k], strides=[stride] * 2,
                       pads=[pad] * 4, output_padding=[output_padding] * 2)

    def resize(self, x, mode: str, scale: float = 2.0, size: tuple[int, int] | None = None):
        """mode: 'align_corners' | 'half_pixel' (bilinear) | 'nearest' (asymmetric, floor)."""
        kw = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        if mode != "nearest":
            kw = dict(mode="linear", coordinate_transformation_mode=mode)
        if size is None:
            scales = self.const(np.array([1, 1, scale, scale], "float32"), "sc")
            return self.op("Resize", [x, "", scales], **kw)
        # sizes needs the batch: take it from the input's shape (symbolic batch friendly)
        n = self.op("Shape", [x], start=0, end=2)
        sizes = self.op("Concat", [n, self.const(np.array(size, "int64"), "sz")], axis=0)
        return self.op("Resize", [x, "", "", sizes], **kw)

    def model(self, *outs: str) -> onnx.ModelProto:
        names = ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]
        for src, name in zip(outs, names):
            self.nodes.append(helper.make_node("Identity", [src], [name]))
        outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [self.batch, None, None, None])
                   for n in names]
        g = helper.make_graph(self.nodes, "g", [self.inp], outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


# ---- single-op and small graphs -------------------------------------------------------------

def conv_graph(cin=16, cout=32, h=16, w=16, relu=True, bias=True, **conv_kw) -> onnx.ModelProto:
    g = Graph(cin, h, w)
    y = g.conv("input", cin, cout, bias=bias, **conv_kw)
    return g.model(g.relu(y) if relu else y)


def conv_transpose_graph(cin=32, cout=16, h=12, w=12, **kw) -> onnx.ModelProto:
    g = Graph(cin, h, w)
    return g.model(g.conv_transpose("input", cin, cout, **kw))


def pool_graph(c=8, h=13, w=11, ceil_mode=0, k=2, s=2) -> onnx.ModelProto:
    g = Graph(c, h, w)
    return g.model(g.maxpool("input", k, s, ceil_mode))


def resize_graph(mode: str, c=8, h=12, w=10, scale=2.0) -> onnx.ModelProto:
    g = Graph(c, h, w)
    return g.model(g.resize("input", mode, scale))


def misc_graph(c=16, h=16, w=16) -> onnx.ModelProto:
    """Concat + Add + Sigmoid around two convs (elementwise epilogues and a concat PrimFunc)."""
    g = Graph(c, h, w)
    a = g.conv("input", c, c)
    b = g.relu(g.conv("input", c, c))
    y = g.concat(g.add(a, b), g.sigmoid(a))
    return g.model(g.conv(y, 2 * c, c, k=1))


def mini_unet(c=16, h=32, w=32, batch: int | str = "N", seed=0) -> onnx.ModelProto:
    """UNet-like: CBR blocks (BN), max pools (floor and ceil), ConvTranspose k2s2, the three Resize
    modes, Concat, Add (residual), 1x1 conv heads with Sigmoid; two outputs (deep supervision)."""
    g = Graph(3, h, w, batch, seed)
    e0 = g.cbr(g.cbr("input", 3, c), c, c)                            # h
    e1 = g.cbr(g.maxpool(e0), c, 2 * c)                               # h/2
    e2 = g.cbr(g.maxpool(e1, ceil_mode=1), 2 * c, 4 * c)              # h/4
    r = g.conv(e2, 4 * c, 4 * c, k=1)
    e2 = g.add(r, g.cbr(r, 4 * c, 4 * c))                             # R2U-style residual
    u1 = g.conv_transpose(e2, 4 * c, 2 * c)                           # h/2 (UNet up-conv)
    n1 = g.cbr(g.resize(e2, "nearest"), 4 * c, 2 * c)                 # h/2 (R2U up)
    d1 = g.cbr(g.concat(e1, u1, n1), 6 * c, 2 * c)
    a0 = g.resize(d1, "align_corners")                                # h (UNet++ up)
    h0 = g.resize(d1, "half_pixel")                                   # h (UNet3+ up)
    p0 = g.cbr(g.maxpool(g.maxpool(e0), ceil_mode=1), c, c)           # h/4 (UNet3+ down, ceil)
    b0 = g.resize(p0, "half_pixel", 4.0)
    d0 = g.cbr(g.concat(e0, a0, h0, b0), 6 * c, c)
    head1 = g.sigmoid(g.conv(d0, c, 1, k=1))
    head2 = g.sigmoid(g.conv(d1, 2 * c, 1, k=1))
    return g.model(head1, head2)


def ort_run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})
