"""`deploy zoo train | export | prepare` (needs the optional torch extra) and `deploy zoo public list | export`
(the zoo-public extra)."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import click

from deploy.catalogue import NAMES, PUBLIC_NAMES
from deploy.errors import DeployError


def _zoo(module: str):
    """Import a torch-backed zoo module, turning a missing torch into a plain user error.

    Before torch loads, OpenMP is told to sleep rather than spin while waiting: on a shared 2-core
    machine spinning threads starve each other (measured: a tiny training run took 8x longer)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return importlib.import_module(f"deploy.zoo.{module}")
    except ImportError as e:
        if "torch" in str(e):
            raise DeployError("the model zoo needs PyTorch: pip install 'segdeploy[zoo]'") from e
        raise


MODEL = click.argument("model", type=click.Choice(NAMES))
PRECISIONS = ("auto", "fp32", "bf16")  # = deploy.zoo.train.PRECISIONS (not imported: that loads torch)
PRECISION = click.option("--precision", default="auto", show_default=True, type=click.Choice(PRECISIONS),
                         help="Forward-pass precision while training; auto = bf16 autocast where the CPU has native "
                         "bf16 (AVX512-BF16/AMX), else fp32. The exported ONNX is fp32 either way.")


@click.group("zoo")
def zoo_group() -> None:
    """Seed networks (UNet++, R2U-Net, UNet 3+, UNet): train on CPU, export to ONNX."""


@zoo_group.command("train")
@MODEL
@click.option("--data", "data", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="DSB2018 layout (images/, masks/) or portrait layout (testing/images, testing/masks).")
@click.option("--steps", default=300, show_default=True, type=click.IntRange(0), help="Optimizer steps.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--width", default=1.0, show_default=True, type=click.FloatRange(0, 4, min_open=True),
              help="Channel multiplier (1.0 = the reference network).")
@click.option("--size", default=None, type=click.IntRange(16),
              help="Training/eval input size (default: the model's, 96 or 128).")
@click.option("--lr", default=1e-3, show_default=True, type=float)
@click.option("--out", "out", default=Path("workspace/zoo/train"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Checkpoint folder (<model>-<size>.pt).")
@click.option("--fresh", is_flag=True, help="Ignore an existing checkpoint instead of resuming it.")
@PRECISION
def train_cmd(model, data, steps, batch, seed, width, size, lr, out, fresh, precision) -> None:
    """Train MODEL (BCE, Adam, flips; rot90 for nuclei) and report the held-out UNET-ZOO IoU."""
    train = _zoo("train")
    path = train.train(model, data, out, steps=steps, batch=batch, seed=seed, width=width, lr=lr, size=size,
                       resume=not fresh, precision=precision, log=lambda m: click.echo(m, err=True))
    click.echo(str(path))


@zoo_group.command("export")
@MODEL
@click.option("--weights", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="A zoo checkpoint or a state dict; without it the weights are random (seeded).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--width", default=None, type=click.FloatRange(0, 4, min_open=True),
              help="Channel multiplier (default: the checkpoint's, else 1.0).")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1), help="Example batch for tracing "
              "(the exported batch dimension is symbolic either way).")
@click.option("--seed", default=0, show_default=True, type=int)
def export_cmd(model, weights, out, width, batch, seed) -> None:
    """Export MODEL to ONNX (opset 17, input `input`, BN folded, symbolic batch)."""
    export = _zoo("export")
    if weights is None:
        click.echo(f"note: no --weights, exporting {model} with random weights (seed {seed})", err=True)
    if width is None:
        width = None if weights is not None else 1.0
    path = export.export_onnx(model, out, weights=weights, width=width, batch=batch, seed=seed)
    click.echo(str(path))


@zoo_group.command("prepare")
@MODEL
@click.option("--out-dir", default=Path("workspace/zoo"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--data-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Where the synthetic sets live / are generated (default: <out-dir>/../data).")
@click.option("--steps", default=None, type=click.IntRange(0), help="Override the model's step budget.")
@click.option("--width", default=None, type=click.FloatRange(0, 4, min_open=True))
@click.option("--batch", default=None, type=click.IntRange(1))
@click.option("--lr", default=None, type=click.FloatRange(0, min_open=True), help="Override the model's learning rate.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Re-export even when the ONNX is cached (training resumes/reuses "
              "its checkpoint).")
@PRECISION
def prepare_cmd(model, out_dir, data_dir, steps, width, batch, lr, seed, force, precision) -> None:
    """Make <out-dir>/MODEL-<size>.onnx if missing: synthesize data, train, export (idempotent)."""
    prepare = _zoo("prepare")
    path = prepare.prepare(model, out_dir, data_dir, steps=steps, width=width, batch=batch, lr=lr, seed=seed,
                           force=force, precision=precision, log=lambda m: click.echo(m, err=True))
    click.echo(str(path))


@zoo_group.group("public")
def public_group() -> None:
    """Public networks (torchvision, segmentation-models-pytorch) with random weights: the `zoo-public` extra."""


@public_group.command("list")
def public_list_cmd() -> None:
    """The public networks: name, library, constructor, encoder, benchmark size."""
    from deploy.catalogue import PUBLIC
    for m in PUBLIC.values():
        click.echo(f"{m.name}\t{m.library}\t{m.arch}\t{m.encoder or '-'}\t{m.size}")


@public_group.command("export")
@click.argument("name", type=click.Choice(PUBLIC_NAMES))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--size", default=None, type=click.IntRange(16), help="Input height = width (default: the "
              "network's benchmark size, 256; PSPNet 288).")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1), help="Example batch for tracing "
              "(the exported batch dimension is symbolic either way).")
@click.option("--seed", default=0, show_default=True, type=int)
def public_export_cmd(name, out, size, batch, seed) -> None:
    """Export NAME to ONNX with random weights (opset 17, input `input`, BN folded, symbolic batch)."""
    export = _zoo("public.export")
    click.echo(str(export.export_onnx(name, out, size=size, batch=batch, seed=seed)))
