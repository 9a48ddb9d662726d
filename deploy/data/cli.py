"""`deploy data ...`: dataset helpers on the command line."""
from __future__ import annotations

from pathlib import Path

import click

from deploy.data.nifti import LIVER_WINDOW


@click.group("data")
def data_group() -> None:
    """Dataset helpers (synthetic sets in the vendor's folder layouts)."""


@data_group.command("synth")
@click.argument("kind", type=click.Choice(["dsb2018", "portrait", "lits"]))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--n", "n", type=click.IntRange(min=1), default=None,
              help="number of images (volumes for lits)  [default: 200; lits: 5]")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="same seed, same bytes")
@click.option("--size", type=click.IntRange(min=32), default=None,
              help="image side in pixels  [default: 256; lits: 128]")
@click.option("--slices", type=click.IntRange(min=4), default=24, show_default=True, help="lits: axial slices")
def synth_cmd(kind: str, out: str, n: int | None, seed: int, size: int | None, slices: int) -> None:
    """Write a synthetic KIND set under OUT in the real set's layout.

    \b
    dsb2018:  OUT/dsb2018_256_val/images/<id>.png, masks/<id>.png (0/255)
    portrait: OUT/testing/images/<n>.png, masks/<n>_matte.png (soft mattes)
    lits:     OUT/volume-<i>.nii (CT in HU), OUT/segmentation-<i>.nii (0 / 1 liver / 2 tumour)
    """
    if kind == "lits":
        from deploy.data.synth_ct import synth_lits

        n, size = n or 5, size or 128
        root = synth_lits(out, n=n, seed=seed, size=size, slices=slices, progress=True)
        click.echo(f"wrote {n} CT volumes ({size}x{size}x{slices}, seed {seed}) and their segmentations to {root}")
        return
    from deploy.data.synth import synth_dsb2018, synth_portrait

    n, size = n or 200, size or 256
    make = synth_dsb2018 if kind == "dsb2018" else synth_portrait
    root = make(out, n=n, seed=seed, size=size, progress=True)
    click.echo(f"wrote {n} {kind} images ({size}x{size}, seed {seed}) to {root / 'images'} "
               f"and their masks to {root / 'masks'}")


@data_group.command("slices")
@click.argument("src", type=click.Path(file_okay=False, exists=True))
@click.argument("dst", type=click.Path(file_okay=False))
@click.option("--window", "hu_window", nargs=2, type=float, default=LIVER_WINDOW, show_default=True,
              metavar="LOW HIGH", help="HU window mapped onto 0..255 (default: the liver window)")
@click.option("--labels", type=click.Choice(["classes", "liver"]), default="classes", show_default=True,
              help="seg/ slices: class ids 0/1/2 (liver/tumour model) or liver-or-tumour as 255 (liver model)")
def slices_cmd(src: str, dst: str, hu_window: tuple[float, float], labels: str) -> None:
    """Export a LiTS-style folder (SRC/volume-N.nii[.gz] + segmentation-N.nii[.gz]) into axial 8-bit
    PNG slices: DST/CT/volume-N_slice-KKK.png and DST/seg/volume-N_slice-KKK.png."""
    from deploy.data.ct_slices import CT_DIR, SEG_DIR, export_slices

    cases, slices = export_slices(src, dst, hu_window=hu_window, labels=labels, progress=True)
    click.echo(f"wrote {slices} slices of {cases} volumes (HU window [{hu_window[0]:g}, {hu_window[1]:g}], "
               f"labels {labels}) to {Path(dst) / CT_DIR} and {Path(dst) / SEG_DIR}")
