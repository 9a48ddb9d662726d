"""deploy.host: the CPU as /proc/cpuinfo reports it, the usable cores, and the report line."""
from __future__ import annotations

import os

import pytest

from deploy import host

INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8488C
cpu MHz\t\t: 2400.000
flags\t\t: fpu avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_int8 amx_bf16

processor\t: 1
vendor_id\t: GenuineIntel
"""
ZEN5 = INTEL.replace("GenuineIntel", "AuthenticAMD").replace("family\t: 6", "family\t: 26").replace(
    " avx512_fp16 amx_tile amx_int8 amx_bf16", "")


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    def use(text: str) -> None:
        (tmp_path / "cpuinfo").write_text(text)
        monkeypatch.setattr(host, "CPUINFO", tmp_path / "cpuinfo")
        host.cpu.cache_clear()
    yield use
    host.cpu.cache_clear()


def test_cpu_fields_and_description_are_detected(cpuinfo):
    cpuinfo(INTEL)
    c = host.cpu()
    assert (c.vendor, c.family, c.model, c.mhz) == ("GenuineIntel", 6, 143, 2400.0)
    assert host.has_flags("amx_bf16", "avx512_fp16") and not host.has_flags("amx_fp16")
    assert c.generation is None  # no Intel generation is guessed
    line = host.describe()
    assert line.startswith("Intel(R) Xeon(R) Platinum 8488C (GenuineIntel family 6 model 143), ")
    assert line.endswith("avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_int8 amx_bf16")


def test_amd_generation_comes_from_the_family(cpuinfo):
    cpuinfo(ZEN5)
    assert host.cpu().generation == "Zen 5" and "family 26 model 143, Zen 5)" in host.describe()
    cpuinfo(ZEN5.replace("family\t: 26", "family\t: 25"))
    assert host.cpu().generation == "Zen 4"                        # family 25 with AVX-512
    cpuinfo(ZEN5.replace("family\t: 26", "family\t: 25").replace(" avx512f", ""))
    assert host.cpu().generation == "Zen 3"


def test_no_cpuinfo(cpuinfo, tmp_path, monkeypatch):
    monkeypatch.setattr(host, "CPUINFO", tmp_path / "missing")
    host.cpu.cache_clear()
    assert host.cpu().flags == frozenset() and not host.has_flags("avx2")
    assert "none of avx2" in host.describe()


def test_usable_cores_is_the_affinity_mask():
    assert host.usable_cores() == len(os.sched_getaffinity(0))
