"""The seed models, one row each: the single table the zoo, the benchmarks, the demo and the
Makefile read (names, input size, data set, training preprocessing, prediction head, and the
build YAML and vdsp JSON that deploy a model). Standard library only, so `make` can ask it with
the system Python before any environment exists:

    python -m deploy.catalogue names         the models with a build YAML and a vdsp JSON
    python -m deploy.catalogue size MODEL    that model's input size (an unknown MODEL fails, listing them)

`unetpp_nods` (UNet++ without deep supervision) is a zoo model only: it trains and exports, but no
build YAML or vdsp JSON ships for it, so `make` does not offer it.

PUBLIC is a second table: public segmentation networks nobody on this project wrote (torchvision's
and segmentation-models-pytorch's), built from their libraries with random weights by
deploy.zoo.public; a separate table because they are not trained here and have no build files.
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
    "rgb_imagenet": ("RGB", ("DIV255_MINUSMEAN_DIVSTD", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))),  # public
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


@dataclass(frozen=True)
class PublicModel:
    """A public network as its library builds it: torchvision.models.segmentation.<arch>(num_classes)
    or segmentation_models_pytorch.<arch>(encoder_name=encoder, classes)."""
    name: str
    library: str                # "torchvision" or "smp"
    arch: str                   # the library's constructor name
    encoder: str | None         # smp encoder_name; None for torchvision (its backbone is in `arch`)
    classes: int                # torchvision's default (21, Pascal VOC); 1 for smp (its default)
    size: int = 256             # benchmark input size
    smallest: int = 64          # the smallest input the architecture takes (tests compile there)
    step: int = 32              # input sizes must be multiples of this (the encoder's output stride)
    preprocess: str = "rgb_imagenet"

    def check_size(self, size: int) -> None:
        if size < self.smallest or size % self.step:
            raise DeployError(f"{self.name} takes input sizes >= {self.smallest} that are multiples of "
                              f"{self.step}, not {size}")


TORCHVISION_NETS = ("fcn_resnet50", "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large")
SMP_ARCHS = ("Unet", "UnetPlusPlus", "FPN", "PSPNet", "DeepLabV3Plus", "Linknet", "MAnet", "PAN")
SMP_ENCODERS = ("resnet34", "mobilenet_v2", "efficientnet-b0")
# PSPNet pools the 1/8 feature map to 1, 2, 3 and 6 cells: the legacy ONNX exporter takes only
# pool sizes that divide the map, so inputs are multiples of 48 (bench at 288, not 256).
# PAN's feature pyramid attention halves the 1/32 map three times: 256 is its smallest input.
SMP_SIZES = {"PSPNet": {"size": 288, "smallest": 96, "step": 48}, "PAN": {"smallest": 256}}
# Left out: PSPNet on efficientnet-b0. That encoder pads by amounts computed from the input's shape,
# so the traced feature map has no static size and the legacy exporter refuses the adaptive pooling
# ("adaptive_avg_pool2d, input size not accessible"), with a fixed batch as well; the dynamo
# exporter needs onnxscript, which is not installed.
SMP_UNEXPORTABLE = {("PSPNet", "efficientnet-b0")}


def _public_models() -> list[PublicModel]:
    nets = [PublicModel(n, "torchvision", n, None, 21) for n in TORCHVISION_NETS]
    nets += [PublicModel(f"{a.lower()}_{e}", "smp", a, e, 1, **SMP_SIZES.get(a, {}))
             for a in SMP_ARCHS for e in SMP_ENCODERS if (a, e) not in SMP_UNEXPORTABLE]
    nets.append(PublicModel("segformer_mit_b0", "smp", "Segformer", "mit_b0", 1))
    return nets


PUBLIC = {m.name: m for m in _public_models()}
PUBLIC_NAMES = tuple(PUBLIC)


def public(name: str) -> PublicModel:
    if name not in PUBLIC:
        raise DeployError(f"unknown public model {name!r}; available: {', '.join(PUBLIC_NAMES)}")
    return PUBLIC[name]


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
