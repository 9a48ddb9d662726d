"""`deploy data ...`: dataset helpers on the command line."""
from __future__ import annotations

import click


@click.group("data")
def data_group() -> None:
    """Dataset helpers (synthetic sets in the vendor's folder layouts)."""


@data_group.command("synth")
@click.argument("kind", type=click.Choice(["dsb2018", "portrait"]))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--n", "n", type=click.IntRange(min=1), default=200, show_default=True, help="number of images")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="same seed, same bytes")
@click.option("--size", type=click.IntRange(min=32), default=256, show_default=True, help="image side in pixels")
def synth_cmd(kind: str, out: str, n: int, seed: int, size: int) -> None:
    """Write a synthetic KIND set under OUT in the real set's layout.

    \b
    dsb2018:  OUT/dsb2018_256_val/images/<id>.png, masks/<id>.png (0/255)
    portrait: OUT/testing/images/<n>.png, masks/<n>_matte.png (soft mattes)
    """
    from deploy.data.synth import synth_dsb2018, synth_portrait

    make = synth_dsb2018 if kind == "dsb2018" else synth_portrait
    root = make(out, n=n, seed=seed, size=size, progress=True)
    click.echo(f"wrote {n} {kind} images ({size}x{size}, seed {seed}) to {root / 'images'} "
               f"and their masks to {root / 'masks'}")
