"""The seed models, one row each: the single table the zoo, the benchmarks, the demo and the
Makefile read (names, input size, data set, training preprocessing, prediction head, and the
build YAML and vdsp JSON that deploy a model). Standard library only, so `make` can ask it with
the system Python before any environment exists:

    python -m deploy.catalogue names         the models with a build YAML and a vdsp JSON
    python -m deploy.catalogue size MODEL    that model's input size (an unknown MODEL fails, listing them)

`unetpp_nods` (UNet++ without deep supervision) is a zoo model only: it trains and exports, but no
build YAML or vdsp JSON ships for it, so `make` does not offer it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import DeployError

REPO = Path(__file__).resolve().parents[1]
BUILD_DIR = REPO / "build_in" / "build"
VDSP_DIR = REPO / "vdsp_params"

# How the networks were (and are here) trained to see an image after the resize, by the name the
# exported ONNX records (metadata `preprocess`): channel order and deploy.config.ops.Normalize fields.
RECIPES = {
    "bgr_half": ("BGR", ("DIV255_MINUSMEAN_DIVSTD", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))),  # UNET-ZOO: (x/255-0.5)/0.5
    "rgb_div255": ("RGB", ("DIV255", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))),                 # UNet 3+: x/255
}


@dataclass(frozen=True)
class SeedModel:
    name: str
    size: int                  # input height = width
    dataset: str               # a deploy.data.sets family: "dsb2018" (nuclei), "portrait", "lits" / "lits_classes" (CT)
    preprocess: str            # training recipe, a key of RECIPES
    main_head: int | None      # which deep-supervision output is the prediction; None: one output
    build: str | None = None   # file in build_in/build
    vdsp: str | None = None    # file in vdsp_params
    classes: int = 1           # output channels: 1 = a sigmoid probability; more = softmax over class ids

    @property
    def deployable(self) -> bool:
        return self.build is not None and self.vdsp is not None

    @property
    def channels(self) -> str:
        """The channel order the network takes: "BGR" or "RGB"."""
        return RECIPES[self.preprocess][0]

    @property
    def normalize(self) -> tuple[str, tuple, tuple]:
        """(norma_type, mean, std) as deploy.config.ops.Normalize takes them."""
        return RECIPES[self.preprocess][1]

    @property
    def onnx_name(self) -> str:
        """The zoo's file name for the exported model (what the build YAML's checkpoint names)."""
        return f"{self.name}-{self.size}.onnx"

    @property
    def build_yaml(self) -> Path:
        return BUILD_DIR / self._file(self.build, "build YAML")

    @property
    def vdsp_json(self) -> Path:
        return VDSP_DIR / self._file(self.vdsp, "vdsp JSON")

    def _file(self, name: str | None, what: str) -> str:
        if name is None:
            raise DeployError(f"{self.name} has no {what}; models with one: {', '.join(DEPLOYABLE)}")
        return name


MODELS = {m.name: m for m in (
    SeedModel("unetpp", 96, "dsb2018", "bgr_half", main_head=3,
              build="official_unetpp.yaml", vdsp="unetzoo-unetpp-vdsp_params.json"),
    SeedModel("unetpp_nods", 96, "dsb2018", "bgr_half", main_head=None),
    SeedModel("r2u_net", 96, "dsb2018", "bgr_half", main_head=None,
              build="official_r2u_net.yaml", vdsp="unetzoo-r2u_net-vdsp_params.json"),
    SeedModel("unet3p", 128, "portrait", "rgb_div255", main_head=None,
              build="official_unet3p.yaml", vdsp="unet3p-vdsp_params.json"),
    SeedModel("unet3p_ds", 128, "portrait", "rgb_div255", main_head=0,
              build="official_unet3p_ds.yaml", vdsp="unet3p_ds-vdsp_params.json"),
    SeedModel("unet", 96, "dsb2018", "bgr_half", main_head=None,
              build="official_unet.yaml", vdsp="unetzoo-unet-vdsp_params.json"),
    # the LiTS seed: UNet 3+ segmenting the liver (with its tumours) in axial CT slices; the grey
    # slice PNG is decoded to 3 equal channels (grey-to-3-channel input), x/255
    SeedModel("unet3p_liver", 128, "lits", "rgb_div255", main_head=None,
              build="official_unet3p_liver.yaml", vdsp="unet3p_liver-vdsp_params.json"),
    # the liver/tumour UNet: 3-class softmax (0 background, 1 liver, 2 tumour) on the same slices,
    # grey-to-3-channel input with the UNET-ZOO recipe
    SeedModel("unet_lits", 128, "lits_classes", "bgr_half", main_head=None, classes=3,
              build="official_unet_lits.yaml", vdsp="unetzoo-unet_lits-vdsp_params.json"),
)}
NAMES = tuple(MODELS)
DEPLOYABLE = tuple(n for n, m in MODELS.items() if m.deployable)


def get(name: str, deployable: bool = False) -> SeedModel:
    """The row of `name`; an unknown name (or, with `deployable`, one without build files) lists the choices."""
    choices = DEPLOYABLE if deployable else NAMES
    if name in MODELS and name not in choices:
        raise DeployError(f"{name} is a zoo model without a build YAML and vdsp JSON; "
                          f"deployable models: {', '.join(choices)}")
    if name not in choices:
        raise DeployError(f"unknown model {name!r}; available: {', '.join(choices)}")
    return MODELS[name]


def main(argv: list[str]) -> int:
    usage = "usage: python -m deploy.catalogue names | size MODEL"
    if argv == ["names"]:
        print(" ".join(DEPLOYABLE))
        return 0
    if len(argv) != 2 or argv[0] != "size":
        print(usage, file=sys.stderr)
        return 2
    try:
        print(get(argv[1], deployable=True).size)
    except DeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
