"""`make bench` / `python -m deploy.bench`: speed as ratios against onnxruntime in the same run,
written to workspace/bench/<part>.md|json. Never a unit test: numbers depend on the machine."""
from __future__ import annotations

from pathlib import Path

import click

from deploy.bench import report
from deploy.catalogue import DEPLOYABLE

PARTS = ("compile", "int8", "stream", "zoo")  # `make bench`
EXTRA = ("ray",)  # the stream part holds it too: only with --only


@click.command()
@click.option("--only", "parts", multiple=True, type=click.Choice(PARTS + EXTRA),
              help="Run only these parts (repeatable).")
@click.option("--models", "names", default=",".join(DEPLOYABLE), show_default=True,
              help="Comma-separated seed models for the compiler and int8 parts.")
@click.option("--zoo", "zoo_names", default=None,
              help="Comma-separated public networks for the zoo part (default: all of catalogue.PUBLIC).")
@click.option("--runs", default=20, show_default=True, type=click.IntRange(3), help="Timed runs per engine (median).")
@click.option("--batches", default="1,8", show_default=True)
@click.option("--out", default=Path("workspace/bench"), show_default=True, type=click.Path(path_type=Path))
@click.option("--publish", is_flag=True, help="Also publish each report as figure bench-<part> (docs/figures, README).")
def main(parts, names, zoo_names, runs, batches, out, publish) -> None:
    batches = tuple(int(b) for b in batches.split(","))
    for part in parts or PARTS:
        module = __import__(f"deploy.bench.{part}", fromlist=["run", "markdown"])
        kwargs = {"names": tuple(names.split(","))} if part in ("compile", "int8") else {}
        if part == "zoo" and zoo_names:
            kwargs = {"names": tuple(zoo_names.split(","))}
        result = module.run(out, batches=batches, runs=runs, **kwargs)
        js, md = report.write(out, part, result, module.markdown(result))
        if publish:
            report.publish(f"bench-{part}", result, md.read_text())
        click.echo(md.read_text())
        click.echo(f"wrote {md} and {js}")


if __name__ == "__main__":
    main()
