"""deploy.runtime.profile: per-kernel time table of a compiled model."""
from __future__ import annotations

import numpy as np

import onnx_graphs as G
from deploy.compiler import compile_build
from deploy.config import load_build_config
from deploy.runtime import Model
from deploy.runtime.profile import profile, table
from test_compiler import write_build


def test_profile_names_the_kernels_and_leaves_the_model_as_it_was(tmp_path):
    model = G.misc_graph(c=8, h=16, w=16)
    m = Model(compile_build(load_build_config(write_build(tmp_path, model, "prof")), progress=False))
    x = np.random.default_rng(0).standard_normal((2, 8, 16, 16)).astype("float32")
    times = profile(m, x, runs=3)
    names = [t.name for t in times]
    assert any("conv2d" in n for n in names) and not any(n.startswith("vm.builtin") for n in names)
    assert all(t.calls >= 1 and t.ms >= 0 for t in times) and times == sorted(times, key=lambda t: -t.ms)
    assert "| kernel | calls | ms | share |" in table(times)
    np.testing.assert_allclose(m.run(x)[0], G.ort_run(model, x)[0], atol=1e-4)  # instrument removed
