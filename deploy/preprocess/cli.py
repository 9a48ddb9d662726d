"""`deploy check-preprocess BUILD.yaml VDSP.json`."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from deploy.config import load_build_config, load_vdsp_config
from deploy.preprocess.check import PROBE_NAME, check_images


@click.command("check-preprocess")
@click.argument("build_yaml", type=click.Path(dir_okay=False))
@click.argument("vdsp_json", type=click.Path(dir_okay=False))
@click.option("--image", "images", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Image(s) to compare besides the generated colour probe; default: the --num most "
                   "colourful of a seeded sample of dataset.path.")
@click.option("--num", default=4, show_default=True, help="How many dataset images to compare.")
@click.option("--tol", default=1e-3, show_default=True, help="Largest acceptable max-abs difference.")
def check_preprocess_cmd(build_yaml: str, vdsp_json: str, images: tuple[str, ...], num: int, tol: float) -> None:
    """Check that a build YAML's process_ops and a vdsp JSON produce the same input tensor."""
    build, vdsp = load_build_config(build_yaml), load_vdsp_config(vdsp_json)
    results = check_images(build, vdsp, [Path(p) for p in images], num)
    click.echo(f"images: {PROBE_NAME} (generated R, G, B ramps and colour patches) {_others(build, images, results)}")
    for r in results:
        click.echo(f"{r.image}: max abs diff {r.max_abs_diff:.6g}" + (f"  <- {r.hint}" if r.hint else ""))
    worst = max(r.max_abs_diff for r in results)
    ok = worst <= tol
    click.echo(f"{'OK' if ok else 'MISMATCH'}: max abs diff {worst:.6g} over {len(results)} image(s) (tol {tol:g})")
    if not ok:
        sys.exit(1)


def _others(build, images: tuple[str, ...], results: list) -> str:
    n = len(results) - 1
    if images:
        return f"and {n} given"
    if n:
        return f"and the {n} most colourful of a seeded sample of {build.dataset.path}"
    return f"only: no dataset images in {build.dataset.path}"
