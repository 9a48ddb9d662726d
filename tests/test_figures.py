"""deploy.figures: publish() writes the figure file and the README region, and every region of
the shipped README is exactly its docs/figures file (the README's numbers cannot drift)."""
from __future__ import annotations

from pathlib import Path

import pytest

from deploy.errors import DeployError
from deploy.figures import FIGURES_DIR, figure_text, publish, regions

ROOT = Path(__file__).resolve().parents[1]
TABLE = "# Speed\n\n| model | img/s |\n|---|---|\n| unetpp | 12.5 |\n"


def _readme(root: Path, *names: str) -> Path:
    region = "<!-- begin: {n} -->\nold {n}\n<!-- end: {n} -->\n\nafter {n}\n"
    parts = ["# project\n\nintro\n"] + [region.format(n=n) for n in names]
    (root / "README.md").write_text("\n".join(parts))
    return root / "README.md"


def test_publish_round_trip(tmp_path):
    readme = _readme(tmp_path, "speed", "other")
    res = publish("speed", TABLE, machine="Test CPU (family 1), 2 usable cores", date="2026-12-04 10:00 UTC",
                  root=tmp_path)
    assert res.readme_updated and res.figure == tmp_path / FIGURES_DIR / "speed.md"
    text = res.figure.read_text()
    assert text.startswith("Figure `speed`, measured 2026-12-04 10:00 UTC on\nTest CPU (family 1), 2 usable cores.")
    assert "\n### Speed\n" in text and "| unetpp | 12.5 |" in text  # headings nest below the README's
    got = regions(readme.read_text())
    assert got["speed"] == text.rstrip("\n") and got["other"] == "old other"
    assert "after speed" in readme.read_text() and "intro" in readme.read_text()
    again = publish("speed", TABLE.replace("12.5", "13.0"), machine="m", root=tmp_path)  # replaces, never appends
    assert regions(readme.read_text())["speed"] == again.figure.read_text().rstrip("\n")
    assert readme.read_text().count("<!-- begin: speed -->") == 1 and "12.5" not in readme.read_text()


def test_publish_detects_the_machine_and_date_and_keeps_readmes_without_a_region(tmp_path):
    from deploy.host import describe
    readme = _readme(tmp_path, "other")
    before = readme.read_text()
    res = publish("speed", TABLE, root=tmp_path)
    assert not res.readme_updated and readme.read_text() == before
    assert describe() in res.figure.read_text() and " UTC on\n" in res.figure.read_text()


def test_publish_refuses_broken_markers_and_bad_names(tmp_path):
    (tmp_path / "README.md").write_text("<!-- begin: speed -->\nno end\n")
    with pytest.raises(DeployError, match="has no '<!-- end: speed -->'"):
        publish("speed", TABLE, machine="m", root=tmp_path)
    with pytest.raises(DeployError, match="figure name"):
        publish("../x", TABLE, machine="m", root=tmp_path)


def test_every_readme_region_is_its_published_figure():
    got = regions((ROOT / "README.md").read_text())
    assert "demo-unetpp" in got  # the README's demo numbers come from `make demo`
    for name, body in got.items():
        figure = ROOT / FIGURES_DIR / f"{name}.md"
        assert figure.is_file(), f"README region {name!r} has no {figure}"
        assert body == figure.read_text().rstrip("\n"), f"README region {name!r} differs from {figure}"


def test_figure_text_demotes_headings_only_at_line_start():
    text = figure_text("x", "# A\n## B\nnot # a heading\n", machine="m", date="d")
    assert "\n### A\n#### B\nnot # a heading\n" in text
