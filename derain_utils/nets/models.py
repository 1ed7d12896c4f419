"""Deraining networks: ResNet, UNet, SwinIR and PReNet, built from scratch and selected by name.

Gu et al. (NeurIPS 2023) show that the "slacking off" behaviour is not a quirk of
one architecture: a plain residual CNN (ResNet), an encoder-decoder (UNet) and a
window-attention transformer (SwinIR) all learn the *least complex* component of
the training pair. This module provides small, configurable versions of the three
families so that the monograph can repeat each experiment across them, and PReNet (Ren et al.,
CVPR 2019), a published deraining baseline whose authors' weights load into :class:`PReNetDerain`
(see :mod:`derain_utils.nets.published`).

The common idea: a global residual
-----------------------------------
By default every model here predicts the **rain layer** rather than the background::

    derained = rainy - f(rainy)          f = the network body ("residual")

so at initialisation, when ``f`` is almost zero, the model is almost the identity
(``derained ~ rainy``) and training only has to learn what to subtract. The last
convolution of ``f`` is initialised with small weights (its default initialisation
times ``tail_scale``, default 0.01; bias zero; ``tail_scale=0`` makes the untrained
model exactly the identity). This keeps early training stable and makes the two
failure modes of the paper easy to read: a network that has only learned the
training rain subtracts little on unseen rain and returns (nearly) the rainy input.

What the network predicts
-------------------------
Predicting the rain may itself tilt a network toward learning the rain, the very
thing the study is about, so every model takes ``predict``:

* ``predict="rain"`` (default): ``derained = rainy - f(rainy)``, as above;
* ``predict="background"``: ``derained = f(rainy)``, the body's output directly, no
  global residual. The last layer starts with the same small weights and a bias of
  0.5, so the untrained model returns a flat mid-grey image (it knows nothing of the
  background) instead of the rainy input; ``tail_scale=0`` makes it exactly 0.5.

The architecture and its parameter count do not change; only the output does.

``forward`` is *not* clamped (clamping would kill gradients wherever the output
leaves [0, 1]); use :meth:`DerainNet.predict` for evaluation, which runs without
gradients and clamps to [0, 1].

Padding
-------
UNet and SwinIR need spatial sizes that are multiples of ``2**levels`` and of the
attention window. They reflect-pad the input (replicate-pad where the image is too
small to reflect) and crop the output back, so every model maps
``(N, C, H, W) -> (N, C, H, W)`` for any ``H, W >= 1``.

Sizes
-----
:data:`MODEL_SIZES` gives three named sizes per architecture, matching the
profiles of the monograph: ``tiny`` (smoke tests, seconds), ``quick`` (a laptop
CPU, minutes; also each constructor's default) and ``paper`` (one GPU, close to
the paper's scale; ``swinir/paper`` is the SwinIR-light configuration of Liang et
al. 2021). :func:`count_params` and :func:`count_flops` report their cost.

Usage::

    model = build_model("unet", in_channels=3, size="quick")
    derained = model.predict(rainy)              # (N, 3, H, W) in [0, 1]
    clone = build_model(**model.config)          # same architecture, fresh weights
"""
from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "ARCHS",
    "PREDICT",
    "MODEL_SIZES",
    "DerainNet",
    "ResNetDerain",
    "UNetDerain",
    "SwinIRDerain",
    "PReNetDerain",
    "SwinBlock",
    "WindowAttention",
    "build_model",
    "model_kwargs",
    "count_params",
    "count_flops",
    "models_table",
    "pad_to_multiple",
    "window_partition",
    "window_reverse",
    "shifted_window_mask",
    "relative_position_index",
]

# --------------------------------------------------------------------------- sizes

MODEL_SIZES: dict[str, dict[str, dict[str, Any]]] = {
    # depth = number of 3x3 conv layers in f (incl. the first and the last);
    # width = channels of the hidden layers; block = "plain" | "residual".
    "resnet": {
        "tiny": {"depth": 6, "width": 16, "block": "plain"},
        "quick": {"depth": 8, "width": 32, "block": "plain"},
        # head conv + 8 residual blocks (2 convs each, internal skip) + tail conv
        "paper": {"depth": 18, "width": 64, "block": "residual"},
    },
    # levels = number of 2x down-samplings; base_width = channels at full resolution
    # (doubling per level); down = "maxpool" | "stride"; up = "bilinear" | "transpose".
    "unet": {
        # tiny is quick's size: smaller UNets mostly stay at the identity in the smoke profile's 150 steps (training
        # removal 0.00 for 1-4 of 4 models at base width 8, 12 or 14, or one level at 16 or 24; 0 of 8 at this size,
        # dead leaves and natural photos, 2026-12-06), and the smoke run must compute numbers (issue 23)
        "tiny": {"levels": 2, "base_width": 16, "down": "maxpool", "up": "bilinear"},
        "quick": {"levels": 2, "base_width": 16, "down": "maxpool", "up": "bilinear"},
        "paper": {"levels": 4, "base_width": 32, "down": "maxpool", "up": "bilinear"},
    },
    # embed_dim = token channels; depths[i]/num_heads[i] = Swin blocks / heads of
    # residual group i; window_size = attention window (px); mlp_ratio = MLP width / embed_dim.
    "swinir": {
        "tiny": {"embed_dim": 16, "depths": (2,), "num_heads": (2,), "window_size": 8, "mlp_ratio": 2.0},
        "quick": {"embed_dim": 24, "depths": (2, 2), "num_heads": (2, 2), "window_size": 8, "mlp_ratio": 2.0},
        # SwinIR-light (Liang et al., ICCVW 2021): embed 60, 4 groups x 6 blocks, 6 heads.
        "paper": {
            "embed_dim": 60,
            "depths": (6, 6, 6, 6),
            "num_heads": (6, 6, 6, 6),
            "window_size": 8,
            "mlp_ratio": 2.0,
        },
    },
    # stages = recurrent stages T; width = feature channels; blocks = residual blocks per stage. PReNet is
    # published in one size (Ren et al., CVPR 2019: T = 6, 32 channels, 5 blocks, 168,963 parameters): it is
    # both `quick` and `paper`, and the constructor's default, so that the published weights load into
    # `build_model("prenet")`.
    "prenet": {
        "tiny": {"stages": 2, "width": 8, "blocks": 1},
        "quick": {"stages": 6, "width": 32, "blocks": 5},
        "paper": {"stages": 6, "width": 32, "blocks": 5},
    },
}

ARCHS: tuple[str, ...] = tuple(MODEL_SIZES)

PREDICT: tuple[str, ...] = ("rain", "background")
"""What a model's body predicts (the ``predict`` argument of every model); the first is the default."""

#: Initial bias of the last layer, per ``predict``: 0 for the rain layer (identity at start), 0.5 for the
#: background (a flat mid-grey image at start).
_TAIL_BIAS: dict[str, float] = {"rain": 0.0, "background": 0.5}


def model_kwargs(arch: str, size: str) -> dict[str, Any]:
    """The constructor keyword arguments of ``arch`` at named ``size`` (a fresh copy).

    Raises ValueError naming ``arch`` or ``size`` when either is unknown.
    """
    if arch not in MODEL_SIZES:
        raise ValueError(f"unknown arch {arch!r}; valid names: {', '.join(ARCHS)}")
    sizes = MODEL_SIZES[arch]
    if size not in sizes:
        raise ValueError(f"unknown size {size!r} for arch {arch!r}; valid sizes: {', '.join(sizes)}")
    return dict(sizes[size])


# --------------------------------------------------------------------------- helpers


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _check_tail_scale(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"tail_scale must be a finite number >= 0, got {value!r}")
    return float(value)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad ``x`` (N, C, H, W) at the bottom/right so that H and W are multiples of ``multiple``.

    Uses reflect padding (no artificial edges for the network to react to) and
    falls back to replicate padding when the image is too small to reflect
    (reflect needs pad < size). Crop back with ``y[..., :H, :W]``.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if (ph < h and pw < w) else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def _he_init(module: nn.Module) -> None:
    """He (Kaiming-normal, fan-in, ReLU gain) weights and zero bias for every conv.

    PyTorch's default conv initialisation shrinks activations by ~2.4x per ReLU
    layer; He init keeps their scale, so a 10-layer plain CNN trains from step 0.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _init_tail(conv: nn.Conv2d, scale: float, bias: float = 0.0) -> None:
    """Shrink the last conv (its weights times ``scale``, bias ``bias``): f ~ bias at init."""
    with torch.no_grad():
        conv.weight.mul_(scale)
        if conv.bias is not None:
            conv.bias.fill_(bias)


# --------------------------------------------------------------------------- base


class DerainNet(nn.Module):
    """Base class: ``forward(rainy) = rainy - residual(rainy)``, or ``residual(rainy)`` itself.

    Subclasses implement :meth:`residual` (the body's output f, same shape as the
    input: the estimated rain layer, or the background when ``predicts ==
    "background"``). Attributes: ``arch`` (registry name), ``in_channels``,
    ``predicts`` (one of :data:`PREDICT`, from the ``predict`` argument) and
    ``config`` (the keyword arguments that rebuild the architecture with
    ``build_model(**model.config)``).
    """

    arch: str = "base"

    def __init__(self, in_channels: int, config: dict[str, Any]) -> None:
        super().__init__()
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.predicts: str = _check_choice("predict", config.get("predict", PREDICT[0]), PREDICT)
        self.config: dict[str, Any] = {"name": self.arch, "in_channels": in_channels, **config}

    def residual(self, rainy: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_input(self, rainy: Tensor) -> None:
        if rainy.ndim != 4 or rainy.shape[1] != self.in_channels:
            raise ValueError(
                f"rainy must have shape (N, {self.in_channels}, H, W) for this {self.arch} "
                f"(in_channels={self.in_channels}), got {tuple(rainy.shape)}"
            )

    def forward(self, rainy: Tensor) -> Tensor:
        """rainy (N, C, H, W) float in [0, 1] -> derained (N, C, H, W), *not* clamped."""
        self._check_input(rainy)
        out = self.residual(rainy)
        return out if self.predicts == "background" else rainy - out

    @torch.no_grad()
    def predict(self, rainy: Tensor) -> Tensor:
        """Evaluation output: no gradients, clamped to [0, 1]; train/eval mode restored.

        The models have no batch-norm or dropout, so the mode does not change the
        result; it is switched to eval for hygiene and restored afterwards.
        """
        was_training = self.training
        self.eval()
        try:
            return self(rainy).clamp_(0.0, 1.0)
        finally:
            self.train(was_training)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items() if k not in ("name",))


# --------------------------------------------------------------------------- ResNet


class _ResBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, plus the identity (EDSR style: no BN, no ReLU after the sum)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(width, width)
        self.conv2 = _conv3x3(width, width)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class ResNetDerain(DerainNet):
    """Residual CNN with a global residual: ``derained = rainy - f(rainy)`` (``f(rainy)`` if ``predict="background"``).

    ``f`` has exactly ``depth`` 3x3 conv layers (stride 1, zero padding, so the
    receptive field is ``2*depth + 1`` px):

    * ``block="plain"``: conv(C->width), ReLU, (depth-2) x [conv(width->width), ReLU],
      conv(width->C). A DnCNN-like stack; needs depth >= 2.
    * ``block="residual"``: conv(C->width), ReLU, (depth-2)/2 residual blocks
      [conv, ReLU, conv, + skip], ReLU, conv(width->C). Needs an even depth >= 4;
      use for depths beyond ~12 where a plain stack trains poorly.

    Hidden convs use He init (the second conv of each residual block is further
    scaled by 0.1, so the stack does not amplify activations); the last conv is
    scaled by ``tail_scale`` (see the module docstring).
    """

    arch = "resnet"

    def __init__(
        self,
        in_channels: int = 3,
        depth: int = 8,
        width: int = 32,
        block: str = "plain",
        tail_scale: float = 0.01,
        predict: str = "rain",
    ) -> None:
        super().__init__(
            in_channels,
            {"depth": depth, "width": width, "block": block, "tail_scale": tail_scale, "predict": predict},
        )
        _check_int("width", width, 1)
        _check_choice("block", block, ("plain", "residual"))
        tail_scale = _check_tail_scale(tail_scale)
        if block == "plain":
            _check_int("depth", depth, 2)
            layers: list[nn.Module] = [_conv3x3(in_channels, width), nn.ReLU(inplace=True)]
            for _ in range(depth - 2):
                layers += [_conv3x3(width, width), nn.ReLU(inplace=True)]
        else:
            _check_int("depth", depth, 4)
            if depth % 2:
                raise ValueError(
                    f"depth must be even for block='residual' (head + 2 convs per block + tail), got {depth}"
                )
            layers = [_conv3x3(in_channels, width), nn.ReLU(inplace=True)]
            layers += [_ResBlock(width) for _ in range((depth - 2) // 2)]
            layers += [nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.tail = _conv3x3(width, in_channels)
        _he_init(self)
        for m in self.body:
            if isinstance(m, _ResBlock):
                # Residual branches start small (x0.1) so that He-initialised blocks do
                # not double the activation variance block after block.
                with torch.no_grad():
                    m.conv2.weight.mul_(0.1)
        _init_tail(self.tail, tail_scale, _TAIL_BIAS[self.predicts])

    def residual(self, rainy: Tensor) -> Tensor:
        return self.tail(self.body(rainy))


# --------------------------------------------------------------------------- UNet


class _DoubleConv(nn.Sequential):
    """(conv3x3 -> ReLU) x 2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(_conv3x3(cin, cout), nn.ReLU(inplace=True), _conv3x3(cout, cout), nn.ReLU(inplace=True))


class UNetDerain(DerainNet):
    """Small UNet with a global residual: ``derained = rainy - f(rainy)`` (``f(rainy)`` if ``predict="background"``).

    Encoder: a double-conv at full resolution with ``base_width`` channels, then
    ``levels`` times [2x down-sampling, double-conv doubling the channels]. Decoder:
    ``levels`` times [2x up-sampling, concatenate the encoder features of that
    scale (skip connection), double-conv halving the channels], then a 1x1 conv to
    C channels (scaled by ``tail_scale``). ``down``: ``"maxpool"`` (2x2 max-pool) or
    ``"stride"`` (3x3 conv, stride 2). ``up``: ``"bilinear"`` (bilinear x2, then the
    double-conv mixes) or ``"transpose"`` (2x2 transposed conv, stride 2, halving
    channels). The input is padded to a multiple of ``2**levels`` and cropped back.
    """

    arch = "unet"

    def __init__(
        self,
        in_channels: int = 3,
        levels: int = 2,
        base_width: int = 16,
        down: str = "maxpool",
        up: str = "bilinear",
        tail_scale: float = 0.01,
        predict: str = "rain",
    ) -> None:
        super().__init__(
            in_channels,
            {"levels": levels, "base_width": base_width, "down": down, "up": up, "tail_scale": tail_scale,
             "predict": predict},
        )
        _check_int("levels", levels, 0)
        _check_int("base_width", base_width, 1)
        _check_choice("down", down, ("maxpool", "stride"))
        _check_choice("up", up, ("bilinear", "transpose"))
        tail_scale = _check_tail_scale(tail_scale)
        self.levels = levels
        widths = [base_width * 2**i for i in range(levels + 1)]
        self.inc = _DoubleConv(in_channels, widths[0])
        self.downs = nn.ModuleList()
        self.enc = nn.ModuleList()
        for i in range(levels):
            if down == "maxpool":
                self.downs.append(nn.MaxPool2d(2))
            else:
                self.downs.append(nn.Sequential(_conv3x3(widths[i], widths[i], stride=2), nn.ReLU(inplace=True)))
            self.enc.append(_DoubleConv(widths[i], widths[i + 1]))
        self.ups = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(levels)):
            if up == "bilinear":
                self.ups.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
                cin = widths[i + 1] + widths[i]
            else:
                self.ups.append(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2))
                cin = 2 * widths[i]
            self.dec.append(_DoubleConv(cin, widths[i]))
        self.tail = nn.Conv2d(widths[0], in_channels, 1)
        _he_init(self)
        _init_tail(self.tail, tail_scale, _TAIL_BIAS[self.predicts])

    def residual(self, rainy: Tensor) -> Tensor:
        h, w = rainy.shape[-2:]
        x = pad_to_multiple(rainy, 2**self.levels)
        x = self.inc(x)
        skips = [x]
        for down, enc in zip(self.downs, self.enc):
            x = enc(down(x))
            skips.append(x)
        skips.pop()  # the bottleneck is x itself
        for up, dec in zip(self.ups, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.tail(x)[..., :h, :w]


# --------------------------------------------------------------------------- SwinIR


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """(B, H, W, C) -> (B * nW, ws*ws, C): non-overlapping ws x ws windows, row-major.

    H and W must be multiples of ``window_size``. Window order: batch, then window
    row, then window column; tokens inside a window are row-major.
    """
    b, h, w, c = x.shape
    ws = window_size
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: Tensor, window_size: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nW, ws*ws, C) -> (B, H, W, C)."""
    ws = window_size
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // ws) * (w // ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def shifted_window_mask(
    h: int, w: int, window_size: int, shift: int, device: torch.device | str | None = None
) -> Tensor:
    """Boolean attention mask for shifted-window attention on an (h, w) map: (nW, N, N).

    Shifted windows are implemented by cyclically rolling the map by ``-shift``
    and using the regular window grid. Windows on the last row/column then hold
    pixels that were far apart before the roll (the wrapped boundary); they must
    not attend to each other. Label every pixel of the *rolled* map by the region
    it came from -- rows [0, h-ws), [h-ws, h-shift), [h-shift, h) times the same
    for columns -- and forbid attention between different labels. ``True`` means
    *forbidden*. With ``shift == 0`` the mask is all False.
    """
    ws = window_size
    if h % ws or w % ws:
        raise ValueError(f"h and w must be multiples of window_size={ws}, got h={h}, w={w}")
    if not 0 <= shift < ws:
        raise ValueError(f"shift must be in [0, window_size={ws}), got {shift}")
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    if shift == 0:
        n_w = (h // ws) * (w // ws)
        return torch.zeros(n_w, ws * ws, ws * ws, dtype=torch.bool, device=device)
    row_label = (rows >= h - ws).long() + (rows >= h - shift).long()
    col_label = (cols >= w - ws).long() + (cols >= w - shift).long()
    label = (row_label[:, None] * 3 + col_label[None, :]).float()  # (h, w)
    windows = window_partition(label[None, :, :, None], ws).squeeze(-1)  # (nW, N)
    return windows[:, :, None] != windows[:, None, :]


def relative_position_index(window_size: int) -> Tensor:
    """(N, N) long index into a ((2ws-1)^2, heads) bias table, N = ws*ws.

    Entry (p, q) encodes the offset (dy, dx) = pos(p) - pos(q), each in
    [-(ws-1), ws-1], as (dy + ws - 1) * (2ws - 1) + (dx + ws - 1).
    """
    ws = window_size
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)  # (2, N)
    rel = (coords[:, :, None] - coords[:, None, :]) + (ws - 1)  # (2, N, N)
    return rel[0] * (2 * ws - 1) + rel[1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a learned relative position bias.

    ``softmax(q k^T / sqrt(d) + B[rel(p, q)] + mask) v`` per head, where ``B`` is a
    ((2ws-1)^2, heads) table indexed by the 2-D offset between tokens (Liu et al.
    2021, Swin Transformer). Input/output: (B * nW, N, C), N = ws*ws.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim={dim} must be divisible by num_heads={num_heads}")
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B*nW, N, C); mask bool (nW, N, N), True = forbidden, or None."""
        bn, n, c = x.shape
        qkv = self.qkv(x).view(bn, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B*nW, heads, N, d)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B*nW, heads, N, N)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            n_w = mask.shape[0]
            attn = attn.view(bn // n_w, n_w, self.num_heads, n, n)
            attn = attn.masked_fill(mask[None, :, None], float("-inf")).view(bn, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(bn, n, c)
        return self.proj(out)


class SwinBlock(nn.Module):
    """Swin transformer block on a (B, H, W, C) map (H, W multiples of the window).

    ``x = x + WMSA(LN(x)); x = x + MLP(LN(x))`` where WMSA is window attention,
    on windows shifted by ``shift`` px (cyclic roll + :func:`shifted_window_mask`)
    when ``shift > 0``. The MLP is Linear(C, mlp_ratio*C) -> GELU -> Linear.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window_size, self.shift = window_size, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = max(1, int(round(dim * mlp_ratio)))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self._mask_cache: dict[tuple, Tensor] = {}

    def _mask(self, h: int, w: int, device: torch.device) -> Tensor | None:
        if self.shift == 0:
            return None
        key = (h, w, device.type, device.index)
        if key not in self._mask_cache:
            self._mask_cache[key] = shifted_window_mask(h, w, self.window_size, self.shift, device)
        return self._mask_cache[key]

    def attend(self, x: Tensor) -> Tensor:
        """(Shifted-)window attention alone on x (B, H, W, C) -> (B, H, W, C); no norm/residual."""
        _, h, w, c = x.shape
        s = self.shift
        if s:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        windows = window_partition(x, self.window_size)
        out = self.attn(windows, self._mask(h, w, x.device))
        out = window_reverse(out, self.window_size, h, w)
        if s:
            out = torch.roll(out, shifts=(s, s), dims=(1, 2))
        return out

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attend(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _RSTB(nn.Module):
    """Residual Swin Transformer Block: Swin blocks (shift 0, ws/2, 0, ...) -> conv3x3, + input."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio)
            for i in range(depth)
        )
        self.conv = _conv3x3(dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, H, W, C)
        y = x
        for blk in self.blocks:
            y = blk(y)
        y = self.conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + y


class SwinIRDerain(DerainNet):
    """Light SwinIR (Liang et al., ICCVW 2021) for deraining, with a global residual.

    Pipeline: pad to a multiple of ``window_size`` (reflect) -> shallow features
    conv3x3(C -> embed_dim) -> LayerNorm -> ``len(depths)`` residual Swin groups
    (RSTB: ``depths[i]`` Swin blocks with ``num_heads[i]`` heads, windows shifted
    by ws/2 on every second block, then a conv3x3, plus a residual around the
    group) -> LayerNorm -> conv3x3 + shallow features -> conv3x3(embed_dim -> C)
    (scaled by ``tail_scale``) -> crop -> ``derained = rainy - that`` (or ``that`` itself with
    ``predict="background"``).

    Linear layers use truncated-normal(0.02) init and LayerNorms (1, 0), as in
    SwinIR; convs keep PyTorch's default. ``window_size`` must be even (the shift
    is ws/2); no drop-path or dropout (the datasets here are small and exact
    reproducibility matters more).
    """

    arch = "swinir"

    def __init__(
        self,
        in_channels: int = 3,
        embed_dim: int = 24,
        depths: tuple[int, ...] | list[int] = (2, 2),
        num_heads: tuple[int, ...] | list[int] | int = (2, 2),
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        tail_scale: float = 0.01,
        predict: str = "rain",
    ) -> None:
        depths = tuple(depths) if isinstance(depths, (tuple, list)) else depths
        if isinstance(num_heads, int) and not isinstance(num_heads, bool) and isinstance(depths, tuple):
            num_heads = (num_heads,) * len(depths)
        num_heads = tuple(num_heads) if isinstance(num_heads, (tuple, list)) else num_heads
        super().__init__(
            in_channels,
            {
                "embed_dim": embed_dim,
                "depths": depths,
                "num_heads": num_heads,
                "window_size": window_size,
                "mlp_ratio": mlp_ratio,
                "tail_scale": tail_scale,
                "predict": predict,
            },
        )
        _check_int("embed_dim", embed_dim, 1)
        _check_int("window_size", window_size, 2)
        if window_size % 2:
            raise ValueError(f"window_size must be even (shift = window_size // 2), got {window_size}")
        if not isinstance(depths, tuple) or not depths:
            raise ValueError(f"depths must be a non-empty tuple of ints, got {depths!r}")
        for d in depths:
            _check_int("depths[i]", d, 1)
        if not isinstance(num_heads, tuple) or len(num_heads) != len(depths):
            raise ValueError(f"num_heads must be an int or a tuple of len(depths)={len(depths)}, got {num_heads!r}")
        for nh in num_heads:
            _check_int("num_heads[i]", nh, 1)
            if embed_dim % nh:
                raise ValueError(f"embed_dim={embed_dim} must be divisible by every num_heads entry, got {nh}")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be a number > 0, got {mlp_ratio!r}")
        tail_scale = _check_tail_scale(tail_scale)
        self.window_size = window_size
        self.conv_first = _conv3x3(in_channels, embed_dim)
        self.patch_norm = nn.LayerNorm(embed_dim)
        self.groups = nn.ModuleList(
            _RSTB(embed_dim, d, nh, window_size, float(mlp_ratio)) for d, nh in zip(depths, num_heads)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = _conv3x3(embed_dim, embed_dim)
        self.conv_last = _conv3x3(embed_dim, in_channels)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        _init_tail(self.conv_last, tail_scale, _TAIL_BIAS[self.predicts])

    def residual(self, rainy: Tensor) -> Tensor:
        h, w = rainy.shape[-2:]
        x = pad_to_multiple(rainy, self.window_size)
        shallow = self.conv_first(x)
        t = self.patch_norm(shallow.permute(0, 2, 3, 1))  # (B, H, W, C) tokens
        for group in self.groups:
            t = group(t)
        t = self.norm(t).permute(0, 3, 1, 2)
        deep = self.conv_after_body(t) + shallow
        return self.conv_last(deep)[..., :h, :w]


# --------------------------------------------------------------------------- PReNet


class PReNetDerain(DerainNet):
    """PReNet (Ren et al., CVPR 2019): a recurrent network that refines its estimate over ``stages``.

    Written from the paper's description. The estimate ``x`` starts as the rainy input ``y``. Each
    stage concatenates ``y`` and ``x`` (2C channels), applies conv3x3 + ReLU (``conv0``, ``width``
    channels), then a convolutional LSTM whose gates are conv3x3 of the features concatenated with the
    hidden state ``h`` (``conv_i``, ``conv_f``, ``conv_o`` sigmoid; ``conv_g`` tanh; ``c = f c + i g``,
    ``h = o tanh(c)``, both zero at the start), then ``blocks`` residual blocks on ``h``
    (``res_conv<k>``: conv, ReLU, conv, ReLU, plus the block's input, then ReLU) and a conv3x3 to C
    channels (``conv``). The stage's estimate is ``y + conv(...)``; the last stage's is the output.
    The parameter names are the published ones, so the authors' state dicts load with ``strict=True``.

    What ``predict`` means here: with ``predict="rain"`` (the published network) the last conv of
    every stage predicts *minus* the rain layer and ``y`` is added, so :meth:`residual` (the rain
    layer of the base class) is ``-conv(...)`` of the last stage and ``forward`` returns exactly
    ``y + conv(...)``. With ``predict="background"`` each stage's estimate is ``conv(...)`` itself
    (no ``+ y``; the last conv starts at a bias of 0.5). The last conv is ``tail_scale`` times its He
    initialisation (``tail_scale=0``: the untrained network is the identity), as in the other models.
    """

    arch = "prenet"

    def __init__(
        self,
        in_channels: int = 3,
        stages: int = 6,
        width: int = 32,
        blocks: int = 5,
        tail_scale: float = 0.01,
        predict: str = "rain",
    ) -> None:
        super().__init__(
            in_channels,
            {"stages": stages, "width": width, "blocks": blocks, "tail_scale": tail_scale, "predict": predict},
        )
        self.stages = _check_int("stages", stages, 1)
        _check_int("width", width, 1)
        self.blocks = _check_int("blocks", blocks, 0)
        tail_scale = _check_tail_scale(tail_scale)
        self.conv0 = nn.Sequential(_conv3x3(2 * in_channels, width), nn.ReLU())
        for k in range(1, blocks + 1):
            self.add_module(f"res_conv{k}", nn.Sequential(
                _conv3x3(width, width), nn.ReLU(), _conv3x3(width, width), nn.ReLU()))
        self.conv_i = nn.Sequential(_conv3x3(2 * width, width), nn.Sigmoid())
        self.conv_f = nn.Sequential(_conv3x3(2 * width, width), nn.Sigmoid())
        self.conv_g = nn.Sequential(_conv3x3(2 * width, width), nn.Tanh())
        self.conv_o = nn.Sequential(_conv3x3(2 * width, width), nn.Sigmoid())
        self.conv = nn.Sequential(_conv3x3(width, in_channels))
        _he_init(self)
        _init_tail(self.conv[0], tail_scale, _TAIL_BIAS[self.predicts])

    def _last_stage(self, rainy: Tensor) -> Tensor:
        """The last stage's ``conv(...)`` output (minus the rain layer, or the background)."""
        y = rainy
        x = y
        h = c = None
        d = y
        for _ in range(self.stages):
            feat = self.conv0(torch.cat((y, x), 1))
            if h is None:
                h = c = torch.zeros_like(feat)
            feat = torch.cat((feat, h), 1)
            i, f = self.conv_i(feat), self.conv_f(feat)
            g, o = self.conv_g(feat), self.conv_o(feat)
            c = f * c + i * g
            h = o * torch.tanh(c)
            z = h
            for k in range(1, self.blocks + 1):
                z = F.relu(getattr(self, f"res_conv{k}")(z) + z)
            d = self.conv(z)
            x = d if self.predicts == "background" else y + d
        return d

    def residual(self, rainy: Tensor) -> Tensor:
        d = self._last_stage(rainy)
        return d if self.predicts == "background" else -d


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[DerainNet]] = {
    "resnet": ResNetDerain,
    "unet": UNetDerain,
    "swinir": SwinIRDerain,
    "prenet": PReNetDerain,
}


def build_model(name: str, in_channels: int = 3, size: str | None = None, **kw: Any) -> DerainNet:
    """Build a deraining network by registry name.

    Args:
        name: ``"resnet"``, ``"unet"``, ``"swinir"`` or ``"prenet"``.
        in_channels: 3 (RGB) or 1 (gray); the output has the same channels.
        size: optional named size from :data:`MODEL_SIZES` (``"tiny"``, ``"quick"``,
            ``"paper"``); ``kw`` then overrides single entries. Without ``size`` the
            constructor defaults apply (equal to the ``"quick"`` size).
        **kw: architecture keyword arguments (see each class).

    Raises:
        ValueError: unknown ``name`` (lists the valid names), unknown ``size``, an
            unknown keyword (named, with the valid ones) or a bad value (named).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(_REGISTRY)}")
    cls = _REGISTRY[name]
    kwargs = model_kwargs(name, size) if size is not None else {}
    kwargs.update(kw)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "in_channels")]
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        raise ValueError(
            f"unknown keyword argument(s) {', '.join(map(repr, unknown))} for arch {name!r}; "
            f"valid: {', '.join(valid)}"
        )
    return cls(in_channels=in_channels, **kwargs)


# --------------------------------------------------------------------------- cost


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (elements of tensors with ``requires_grad``)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)
    ):
        raise ValueError(f"size must be a positive int or an (H, W) pair of positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def count_flops(model: nn.Module, size: int | tuple[int, int], in_channels: int = 3, batch: int = 1) -> int:
    """FLOPs of one forward pass on a (batch, in_channels, H, W) input, as counted by torch.

    Measured with :class:`torch.utils.flop_counter.FlopCounterMode` in eval mode
    under ``no_grad``. torch counts 2 FLOPs per multiply-accumulate of the
    matrix-multiply-like ops (convolutions, linear layers, attention matmuls), so a
    k x k conv costs ``2 * H * W * k * k * Cin * Cout``; biases, activations,
    norms, softmax and padding are not counted. Models that pad internally are
    charged for the padded size. ``size`` is an int (square) or ``(H, W)`` in px.
    """
    from torch.utils.flop_counter import FlopCounterMode

    h, w = _hw(size)
    _check_int("in_channels", in_channels, 1)
    _check_int("batch", batch, 1)
    try:
        ref = next(model.parameters())
        device, dtype = ref.device, ref.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    x = torch.zeros(batch, in_channels, h, w, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def models_table(
    archs: tuple[str, ...] = ARCHS,
    sizes: tuple[str, ...] = ("tiny", "quick", "paper"),
    image_size: int = 64,
    in_channels: int = 3,
) -> pd.DataFrame:
    """A pandas DataFrame: one row per (arch, size) with kwargs, params and GFLOPs at ``image_size``."""
    import pandas as pd

    rows = []
    for arch in archs:
        for size in sizes:
            kw = model_kwargs(arch, size)
            torch.manual_seed(0)
            m = build_model(arch, in_channels=in_channels, **kw)
            rows.append(
                {
                    "arch": arch,
                    "size": size,
                    "kwargs": ", ".join(f"{k}={v}" for k, v in kw.items()),
                    "params": count_params(m),
                    f"gflops@{image_size}px": count_flops(m, image_size, in_channels) / 1e9,
                }
            )
    return pd.DataFrame(rows)
