"""`deploy image2npz` / `python image2npz.py`: one `<stem>.npz` per image (key `input_0`, uint8 CHW
RGB at the image's own size, as the vendor runtime receives it) and a datalist with one absolute npz
path per line, sorted by image name. Unreadable images, hidden files and names with control characters
(which a one-path-per-line datalist cannot hold) are reported, counted and left out."""
from __future__ import annotations

import os
from pathlib import Path

import click

from deploy.errors import DeployError
from deploy.tools.common import WORKERS
from deploy.io import atomic_write_text
from deploy.tools import files


def image2npz(dataset_path, target_path, text_path, suffix: str | None = None, workers: int = 2) -> dict:
    """Convert; returns {"written": n, "skipped": [(image, reason)] (unreadable), "unlisted": [(file, reason)]
    (names a datalist cannot hold: hidden, control characters), "datalist": path}."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from deploy.data.image import ImageReadError, read_image_rgb
    from deploy.data.readers import list_images, no_images

    unlisted: list[tuple[str, str]] = []
    images = list_images(dataset_path, suffix, unlisted)
    if not images:
        raise no_images(dataset_path, suffix)
    seen: dict[str, Path] = {}
    for p in images:
        if p.stem in seen:
            raise DeployError(f"{p} and {seen[p.stem]} would both become {p.stem}.npz; pass --suffix to pick one")
        seen[p.stem] = p
    target = Path(target_path)
    target.mkdir(parents=True, exist_ok=True)

    def convert(p: Path) -> Path | str:
        try:
            rgb = read_image_rgb(p)
        except ImageReadError as e:
            return str(e)
        out = target / f"{p.stem}.npz"
        files.save_npz(out, {"input_0": np.ascontiguousarray(rgb.transpose(2, 0, 1))})
        return out

    from tqdm import tqdm
    lines, skipped = [], []
    with ThreadPoolExecutor(workers) as pool:
        for p, res in zip(images, tqdm(pool.map(convert, images), total=len(images), unit="img", leave=False,
                                       disable=None)):
            if isinstance(res, Path):
                lines.append(os.path.abspath(res) + "\n")
            else:
                skipped.append((str(p), res))
    text = Path(text_path)
    if text.parent != Path(""):
        text.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(text, "".join(lines))
    return {"written": len(lines), "skipped": skipped, "unlisted": unlisted, "datalist": str(text.resolve())}


@click.command("image2npz", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dataset_path", required=True, type=click.Path(file_okay=False), help="Folder of source images.")
@click.option("--target_path", required=True, type=click.Path(file_okay=False), help="Folder for the npz files.")
@click.option("--text_path", default="datalist_npz.txt", show_default=True, help="Datalist to write.")
@click.option("--suffix", default=None,
              help="Only files with this extension (png, .jpg, ...) [default: every image extension].")
@click.option("--workers", type=WORKERS, default=2, show_default=True, help="Decoding threads.")
def cli(dataset_path, target_path, text_path, suffix, workers):
    """Images → npz inputs (key input_0, uint8 CHW RGB) + datalist (vendor: image2npz.py)."""
    res = image2npz(dataset_path, target_path, text_path, suffix, workers)
    click.echo(f"wrote {res['written']} npz file(s) to {target_path} and the datalist {res['datalist']}")
    for key, what in (("skipped", "unreadable image(s)"), ("unlisted", "file(s) by name")):
        if res[key]:
            click.echo(f"skipped {len(res[key])} {what}:", err=True)
            for _, reason in res[key][:10]:
                click.echo(f"  {reason}", err=True)
