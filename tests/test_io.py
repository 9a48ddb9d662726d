"""deploy.io: atomic writes (unique temporaries, nothing left behind, the old file intact on
failure) and the file digests."""
from __future__ import annotations

import json
import os
import threading

import pytest

from deploy.io import atomic_save, atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file, sha256_files


def test_atomic_writes_create_folders_and_leave_no_temporary(tmp_path):
    out = tmp_path / "new" / "deeper" / "f.json"
    assert atomic_write_json(out, {"a": [1, 2]}) == out
    assert json.loads(out.read_text()) == {"a": [1, 2]} and out.read_text().endswith("\n")
    atomic_write_text(out, "second")
    assert out.read_text() == "second"
    assert sorted(p.name for p in out.parent.iterdir()) == ["f.json"]


def test_atomic_file_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "m", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o640


def test_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    out = tmp_path / "model.bin"
    atomic_write_bytes(out, b"old")

    def half_then_fail(tmp):
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        atomic_save(out, half_then_fail)
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_concurrent_writers_of_one_path_never_share_a_temporary(tmp_path):
    out, seen = tmp_path / "same.txt", []

    def write(i: int) -> None:
        atomic_save(out, lambda tmp: (seen.append(tmp), tmp.write_text(str(i) * 1000)))
    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 8 and all(p.name.startswith(".same.txt.") for p in seen)
    assert out.read_text() in {str(i) * 1000 for i in range(8)}
    assert [p.name for p in tmp_path.iterdir()] == ["same.txt"]


def test_sha256_file(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_calibration_list_hash(tmp_path):
    a, b = tmp_path / "x" / "a.png", tmp_path / "x" / "b.png"
    a.parent.mkdir()
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    h = sha256_files([a, b])
    assert sha256_files([]) is None and h != sha256_files([b, a]) != sha256_files([a])
    moved = tmp_path / "y"
    a.parent.rename(moved)
    assert sha256_files([moved / "a.png", moved / "b.png"]) == h  # the folder's location does not count
    (moved / "b.png").write_bytes(b"changed")
    assert sha256_files([moved / "a.png", moved / "b.png"]) != h
