"""From-scratch PyTorch definitions of the seed architectures (docs/architectures.md).

Every network takes 3×H×W (H, W multiples of 16) and ends in a sigmoid (a softmax over the
channels for the 3-class `unet_lits`), so outputs are probabilities. Deep-supervision variants return a list of heads; the catalogue's `main_head`
(deploy.catalogue, which also holds the names and input sizes) says which one is the prediction.
`create(name, width)` scales every channel count by `width` (at least
`MIN_CHANNELS`) so tests can build small, fast copies; at width 1.0 the parameter counts are
exactly the reference ones (`PARAMS`).

Module layout follows the original repositories (UNET-ZOO `NestedUNet`/`R2U_Net`/`Unet`,
avBuffer `UNet3Plus`) closely enough that their state dicts map by name where practical, but
nothing here is copied: the code is written from the architecture description.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deploy import catalogue

NAMES = catalogue.NAMES
INPUT_SIZE = {name: m.size for name, m in catalogue.MODELS.items()}
# Exact parameter counts at width 1.0 (architectures.md).
PARAMS = {"unetpp": 9_163_428, "unetpp_nods": 9_163_329, "r2u_net": 39_091_393, "unet3p": 26_971_777,
          "unet3p_ds": 26_989_637, "unet": 7_765_985,
          "unet3p_liver": 26_971_777, "unet_lits": 7_766_051}

MIN_CHANNELS = 4


def _ch(c: int, width: float) -> int:
    return c if width == 1.0 else max(MIN_CHANNELS, int(round(c * width)))


def cbr(cin: int, cout: int) -> nn.Sequential:
    """Conv3×3 (pad 1, bias) → BN → ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=True), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int, cmid: int | None = None):
        super().__init__()
        cmid = cout if cmid is None else cmid
        self.conv = nn.Sequential(*cbr(cin, cmid), *cbr(cmid, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _up(x: torch.Tensor, scale: int, mode: str, align_corners: bool | None = None) -> torch.Tensor:
    """Fixed-factor resize: exports as one ONNX Resize with constant scales (no shape glue)."""
    if mode == "nearest":
        return F.interpolate(x, scale_factor=float(scale), mode="nearest")
    return F.interpolate(x, scale_factor=float(scale), mode=mode, align_corners=align_corners)


# ----------------------------------------------------------------------------------------- UNet++
class NestedUNet(nn.Module):
    """UNet++: nodes X(i,j) are DoubleConvs; X(i,j>0) takes [X(i,0..j-1), up(X(i+1,j-1))].
    Upsampling is bilinear ×2 with align_corners=True. Deep supervision: 1×1 heads on X(0,1..4)."""

    def __init__(self, deep_supervision: bool = True, width: float = 1.0, in_ch: int = 3, out_ch: int = 1):
        super().__init__()
        w = [_ch(c, width) for c in (32, 64, 128, 256, 512)]
        self.deep_supervision = deep_supervision
        self.pool = nn.MaxPool2d(2, 2)
        self.nodes = nn.ModuleDict()
        for i in range(5):
            for j in range(5 - i):
                cin = (in_ch if i == 0 else w[i - 1]) if j == 0 else w[i] * j + w[i + 1]
                self.nodes[f"{i}_{j}"] = DoubleConv(cin, w[i])
        n_heads = 4 if deep_supervision else 1
        self.heads = nn.ModuleList(nn.Conv2d(w[0], out_ch, 1) for _ in range(n_heads))

    def forward(self, x: torch.Tensor):
        X: dict[tuple[int, int], torch.Tensor] = {}
        for i in range(5):
            X[i, 0] = self.nodes[f"{i}_0"](x if i == 0 else self.pool(X[i - 1, 0]))
            # once X(i,0) exists, the anti-diagonal i+j = i can be completed from level i-1 up
            for k in range(i - 1, -1, -1):
                j = i - k
                inputs = [X[k, m] for m in range(j)] + [_up(X[k + 1, j - 1], 2, "bilinear", True)]
                X[k, j] = self.nodes[f"{k}_{j}"](torch.cat(inputs, 1))
        if self.deep_supervision:
            return [torch.sigmoid(head(X[0, j + 1])) for j, head in enumerate(self.heads)]
        return torch.sigmoid(self.heads[0](X[0, 4]))


# ---------------------------------------------------------------------------------------- R2U-Net
class RecurrentBlock(nn.Module):
    """One shared CBR applied t+1 times: y = f(x); then t times y = f(x + y)."""

    def __init__(self, ch: int, t: int = 2):
        super().__init__()
        self.t = t
        self.conv = cbr(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        for _ in range(self.t):
            y = self.conv(x + y)
        return y


class RRCNNBlock(nn.Module):
    def __init__(self, cin: int, cout: int, t: int = 2):
        super().__init__()
        self.conv_1x1 = nn.Conv2d(cin, cout, 1)
        self.rcnn = nn.Sequential(RecurrentBlock(cout, t), RecurrentBlock(cout, t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_1x1(x)
        return x + self.rcnn(x)


class UpConvNearest(nn.Module):
    """Nearest ×2 → CBR."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = cbr(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_up(x, 2, "nearest"))


class EncoderDecoder(nn.Module):
    """The shared U shape of R2U-Net and UNet: encoder blocks with 2×2 max pooling, then up-sample
    + concat with the skip + decoder block per level, and a 1×1 head: a sigmoid for one output
    channel, a softmax over the channels for class scores. Subclasses build
    `enc`, `up`, `dec`, `head`; `skip_first` is the concat order their reference code uses."""
    skip_first = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        d = skips.pop()
        for up, dec in zip(self.up, self.dec):
            pair = [skips.pop(), up(d)]
            d = dec(torch.cat(pair if self.skip_first else pair[::-1], 1))
        h = self.head(d)
        return torch.sigmoid(h) if h.shape[1] == 1 else torch.softmax(h, 1)


class R2UNet(EncoderDecoder):
    def __init__(self, t: int = 2, width: float = 1.0, in_ch: int = 3, out_ch: int = 1):
        super().__init__()
        w = [_ch(c, width) for c in (64, 128, 256, 512, 1024)]
        self.pool = nn.MaxPool2d(2, 2)
        self.enc = nn.ModuleList([RRCNNBlock(in_ch, w[0], t)] + [RRCNNBlock(w[i - 1], w[i], t) for i in range(1, 5)])
        self.up = nn.ModuleList(UpConvNearest(w[i], w[i - 1]) for i in range(4, 0, -1))
        self.dec = nn.ModuleList(RRCNNBlock(2 * w[i - 1], w[i - 1], t) for i in range(4, 0, -1))
        self.head = nn.Conv2d(w[0], out_ch, 1)


# ----------------------------------------------------------------------------------------- UNet 3+
class Branch(nn.Module):
    """One full-scale skip: resample (max-pool ceil_mode / identity / bilinear half-pixel) → CBR."""

    def __init__(self, cin: int, cout: int, scale: int):
        super().__init__()
        self.scale = scale  # < 0: pool by -scale; 1: identity; > 1: upsample
        self.pool = nn.MaxPool2d(-scale, -scale, ceil_mode=True) if scale < 0 else None
        self.conv = cbr(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        elif self.scale > 1:
            x = _up(x, self.scale, "bilinear", False)
        return self.conv(x)


class UNet3Plus(nn.Module):
    def __init__(self, deep_supervision: bool = False, width: float = 1.0, in_ch: int = 3, out_ch: int = 1):
        super().__init__()
        f = [_ch(c, width) for c in (64, 128, 256, 512, 1024)]
        cat = f[0]
        up = cat * 5
        self.deep_supervision = deep_supervision
        self.pool = nn.MaxPool2d(2, 2)
        self.enc = nn.ModuleList([DoubleConv(in_ch, f[0])] + [DoubleConv(f[i - 1], f[i]) for i in range(1, 5)])
        self.stages = nn.ModuleDict()
        self.fuse = nn.ModuleDict()
        for d in (4, 3, 2, 1):   # decoder level (1-based as in the paper: hd4 … hd1)
            branches = []
            for s in range(1, 6):
                if s < d:
                    branches.append(Branch(f[s - 1], cat, -(2 ** (d - s))))
                elif s == d:
                    branches.append(Branch(f[s - 1], cat, 1))
                else:
                    branches.append(Branch(f[4] if s == 5 else up, cat, 2 ** (s - d)))
            self.stages[str(d)] = nn.ModuleList(branches)
            self.fuse[str(d)] = cbr(up, up)
        n_heads = 5 if deep_supervision else 1
        self.heads = nn.ModuleList(nn.Conv2d(f[4] if k == 4 else up, out_ch, 3, padding=1) for k in range(n_heads))

    def forward(self, x: torch.Tensor):
        h = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else self.pool(x))
            h.append(x)
        hd = {5: h[4]}
        for d in (4, 3, 2, 1):
            feats = []
            for s, branch in enumerate(self.stages[str(d)], start=1):
                feats.append(branch(h[s - 1] if s <= d else hd[s]))
            hd[d] = self.fuse[str(d)](torch.cat(feats, 1))
        if not self.deep_supervision:
            return torch.sigmoid(self.heads[0](hd[1]))
        outs = []
        for k, head in enumerate(self.heads):
            y = head(hd[k + 1])
            if k > 0:
                y = _up(y, 2 ** k, "bilinear", False)
            outs.append(torch.sigmoid(y))
        return outs


# -------------------------------------------------------------------------------------------- UNet
class UNet(EncoderDecoder):
    """Plain UNet: DoubleConv encoder, ConvTranspose(2, 2) up, concat[up, skip] → DoubleConv."""
    skip_first = False

    def __init__(self, width: float = 1.0, in_ch: int = 3, out_ch: int = 1):
        super().__init__()
        w = [_ch(c, width) for c in (32, 64, 128, 256, 512)]
        self.pool = nn.MaxPool2d(2, 2)
        self.enc = nn.ModuleList([DoubleConv(in_ch, w[0])] + [DoubleConv(w[i - 1], w[i]) for i in range(1, 5)])
        self.up = nn.ModuleList(nn.ConvTranspose2d(w[i], w[i - 1], 2, stride=2) for i in range(4, 0, -1))
        self.dec = nn.ModuleList(DoubleConv(2 * w[i - 1], w[i - 1]) for i in range(4, 0, -1))
        self.head = nn.Conv2d(w[0], out_ch, 1)


_FACTORIES = {
    "unetpp": lambda w: NestedUNet(deep_supervision=True, width=w),
    "unetpp_nods": lambda w: NestedUNet(deep_supervision=False, width=w),
    "r2u_net": lambda w: R2UNet(t=2, width=w),
    "unet3p": lambda w: UNet3Plus(deep_supervision=False, width=w),
    "unet3p_ds": lambda w: UNet3Plus(deep_supervision=True, width=w),
    "unet": lambda w: UNet(width=w),
    "unet3p_liver": lambda w: UNet3Plus(deep_supervision=False, width=w),  # unet3p trained on CT slices
    "unet_lits": lambda w: UNet(width=w, out_ch=3),
}


def check_name(name: str) -> str:
    return catalogue.get(name).name


def create(name: str, width: float = 1.0) -> nn.Module:
    """A freshly initialised network (PyTorch default init; seed torch beforehand for determinism)."""
    check_name(name)
    if not 0 < width <= 4:
        from deploy.errors import DeployError
        raise DeployError(f"width multiplier must be in (0, 4], got {width}")
    return _FACTORIES[name](float(width))


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def main_output(name: str, outputs):
    """The prediction tensor out of a forward result."""
    k = catalogue.MODELS[name].main_head
    return outputs if k is None else outputs[k]


def as_list(outputs) -> list[torch.Tensor]:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
