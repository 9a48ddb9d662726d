"""deploy.catalogue: the one model table — its files exist and agree with it, the model's own
preprocessing equals what its build YAML and vdsp JSON deploy, and the Makefile reads it."""
from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from deploy import catalogue
from deploy.config import load_build_config, load_vdsp_config
from deploy.errors import DeployError
from deploy.preprocess import Preprocessor
from deploy.preprocess.check import probe_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", catalogue.DEPLOYABLE)
def test_deployable_models_have_both_files_matching_the_table(name):
    m = catalogue.MODELS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = load_build_config(m.build_yaml)
        vdsp = load_vdsp_config(m.vdsp_json)
    assert cfg.frontend.checkpoint == ROOT / "workspace" / "zoo" / m.onnx_name
    assert cfg.frontend.shape == {"input": (1, 3, m.size, m.size)} and vdsp.out_size == (m.size, m.size)
    assert cfg.dataset.path.parent.name == {"dsb2018": "dsb2018_256_val", "portrait": "testing", "lits": "lits_liver",
                                          "lits_classes": "lits_classes"}[m.dataset]


@pytest.mark.parametrize("name", catalogue.DEPLOYABLE)
def test_training_preprocessing_is_what_the_model_deploys_with(name):
    m = catalogue.MODELS[name]
    own = Preprocessor.for_model(name)
    by_yaml = Preprocessor.from_process_ops(load_build_config(m.build_yaml).dataset.process_ops)
    by_vdsp = Preprocessor.from_vdsp(load_vdsp_config(m.vdsp_json))
    img = probe_image(0, (200, 170))  # distinct R, G, B ramps: a channel swap cannot hide
    x = own.from_rgb(img)
    assert x.shape == (3, m.size, m.size)
    np.testing.assert_array_equal(by_yaml.from_rgb(img), x)
    np.testing.assert_array_equal(by_vdsp.from_rgb(img), x)


def test_zoo_only_model_and_unknown_names():
    assert set(catalogue.DEPLOYABLE) == set(catalogue.NAMES) - {"unetpp_nods"}
    assert catalogue.get("unetpp_nods").size == 96
    with pytest.raises(DeployError, match="without a build YAML and vdsp JSON; deployable models: unetpp, r2u_net"):
        catalogue.get("unetpp_nods", deployable=True)
    with pytest.raises(DeployError, match="has no build YAML"):
        catalogue.MODELS["unetpp_nods"].build_yaml
    with pytest.raises(DeployError, match=r"unknown model 'unet4'; available: unetpp, unetpp_nods"):
        catalogue.get("unet4")


def test_command_line(capsys):
    assert catalogue.main(["size", "unet3p"]) == 0 and capsys.readouterr().out == "128\n"
    assert catalogue.main(["names"]) == 0 and capsys.readouterr().out.split() == list(catalogue.DEPLOYABLE)
    assert catalogue.main(["size", "nope"]) == 2 and "unknown model 'nope'" in capsys.readouterr().err


def _make(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # -n: print, run nothing; -B: as if every file were missing, so the ONNX rule always shows
    return subprocess.run(["make", "-n", "-B", f"PY={sys.executable}", *args], cwd=ROOT, capture_output=True,
                          text=True)


def test_makefile_sizes_come_from_the_table():
    r = _make("onnx", "MODEL=unet3p_ds")
    assert r.returncode == 0, r.stderr
    assert "deploy zoo prepare unet3p_ds" in r.stdout


@pytest.mark.parametrize("model", ["unet4", "unetpp_nods"])
def test_makefile_refuses_a_model_it_cannot_build_at_once(model):
    r = _make("compile", f"MODEL={model}")
    assert r.returncode != 0 and "deploy zoo prepare" not in r.stdout
    assert f"MODEL={model} is not a deployable model; models: {' '.join(catalogue.DEPLOYABLE)}" in r.stderr
