"""`deploy compile BUILD_YAML [--dtype fp32|fp16|int8] [--target JSON] [--recalibrate]` (vendor: `vamc compile`)."""
from __future__ import annotations

import json

import click

from deploy.config import DTYPES, load_build_config


@click.command("compile")
@click.argument("build_yaml", type=click.Path(dir_okay=False))
@click.option("--dtype", type=click.Choice(DTYPES), default=None,
              help="Override backend.dtype; the output folder's _fp32/_fp16/_int8 suffix follows.")
@click.option("--target", "target", default=None, metavar="JSON",
              help='TVM JSON target, e.g. \'{"kind": "llvm", "mcpu": "skylake-avx512"}\' or '
                   '\'{"kind": "cuda", "arch": "sm_90"}\'. Default: the YAML\'s backend.compile.target, '
                   'else this host.')
@click.option("--recalibrate", is_flag=True, help="int8: recompute the calibration instead of using the cache.")
@click.option("--progress/--no-progress", default=None, help="Stage progress bar (default: on a terminal).")
def compile_cmd(build_yaml: str, dtype: str | None, target: str | None, recalibrate: bool,
                progress: bool | None) -> None:
    """Compile the ONNX model a build YAML names into <workspace>/<name>/ (mod.so, mod.json, compile.log)."""
    from deploy.compiler.compile import compile_build
    from deploy.runtime.suite import read_meta

    cfg = load_build_config(build_yaml)
    prefix = compile_build(cfg, dtype=dtype, target=target, recalibrate=recalibrate, progress=progress)
    meta = read_meta(prefix)
    click.echo(f"artifact: {prefix}  ({prefix.name}.so, {prefix.name}.json, compile.log in {prefix.parent})")
    click.echo(f"compiled: {meta['dtype']} in {meta['compile']['seconds']:.1f} s for {json.dumps(meta['target'])}")
    batch = "any batch" if meta["batch"]["symbolic"] else f"batch sizes {meta['batch_sizes']}"
    click.echo(f"batch:    {batch}")
    for kind in ("inputs", "outputs"):
        for t in meta[kind]:
            dims = ", ".join("N" if d is None else str(d) for d in t["shape"])
            click.echo(f"{kind[:-1] + ':':<9} {t['name']} [{dims}] {t['dtype']}")
    code = meta.get("device_code")
    if code and not code.get("checked_with"):
        click.echo("note:     CUDA kernels were not test-compiled here (no nvcc); they compile when loaded on the GPU")
