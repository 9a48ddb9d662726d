"""Published figures: the tables the README quotes, written by the commands that measure them.

`publish(name, markdown)` writes `docs/figures/<name>.md` — the table under a line saying when and
on which machine (as deploy.host detects it) it was measured — and puts the same text into the
README between `<!-- begin: NAME -->` and `<!-- end: NAME -->`. `make demo`, `make bench` and
`make accuracy` call it, so a number in the README is always the last one measured and cannot
drift from its report (tests/test_figures.py checks every region against its file).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.catalogue import REPO
from deploy.errors import DeployError
from deploy.io import atomic_write_text, read_text

FIGURES_DIR = Path("docs") / "figures"
README = Path("README.md")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class Published:
    figure: Path
    readme_updated: bool       # False: the README has no region for this figure (the file is still written)


def begin_marker(name: str) -> str:
    return f"<!-- begin: {name} -->"


def end_marker(name: str) -> str:
    return f"<!-- end: {name} -->"


def figure_text(name: str, markdown: str, machine: str | None = None, date: str | None = None) -> str:
    """The figure as written: a provenance line, then `markdown` with its headings moved below the
    README's own (level 3 and deeper), so the text nests in any README section."""
    if machine is None:
        from deploy.host import describe
        machine = describe()
    date = date or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = re.sub(r"^(#{1,6}) ", lambda m: "#" * min(len(m.group(1)) + 2, 6) + " ", markdown.strip(), flags=re.M)
    return f"Figure `{name}`, measured {date} on\n{machine}.\n\n{body}\n"


def _region_pattern(name: str = r"[^ ]+") -> re.Pattern:
    return re.compile(rf"<!-- begin: (?P<name>{name}) -->\n(?P<body>.*?)\n?<!-- end: (?P=name) -->", re.S)


def regions(text: str) -> dict[str, str]:
    """name -> the text between its markers (without the newlines next to them)."""
    found = {m["name"]: m["body"] for m in _region_pattern().finditer(text)}
    for name in re.findall(r"<!-- begin: ([^ ]+) -->", text):
        if name not in found:
            raise DeployError(f"README region {name!r} has no {end_marker(name)!r} after its begin marker")
    return found


def replace_region(text: str, name: str, body: str) -> str | None:
    """`text` with region `name` holding `body`; None when `text` has no such region."""
    if name not in regions(text):
        return None
    block = f"{begin_marker(name)}\n{body.rstrip(chr(10))}\n{end_marker(name)}"
    return _region_pattern(re.escape(name)).sub(lambda _: block, text, count=1)


def publish(name: str, markdown: str, *, machine: str | None = None, date: str | None = None,
            root: Path = REPO) -> Published:
    """Write figure `name` under `root`/docs/figures and into `root`/README.md's region for it."""
    if not _NAME.fullmatch(name):
        raise DeployError(f"figure name {name!r}: use lower-case letters, digits, '-' and '_'")
    text = figure_text(name, markdown, machine, date)
    figure = atomic_write_text(_mkdir(root / FIGURES_DIR) / f"{name}.md", text)
    readme = root / README
    updated = replace_region(read_text(readme, "README"), name, text) if readme.is_file() else None
    if updated is not None:
        atomic_write_text(readme, updated)
    return Published(figure, updated is not None)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
