"""Training deraining networks on synthetic pairs made on the fly, and applying them (:func:`predict`).

The study's training data
-------------------------
Gu et al. (NeurIPS 2023) train on synthetic pairs ``rainy = clip(background + rain)``
and vary only the *backgrounds* (how many, how complex) while the *rain* stays a
fixed, simple distribution. To make that manipulation clean, this module never
stores pairs: every optimisation step draws

1. ``batch_size`` random ``patch x patch`` crops (with random flips) of the
   training backgrounds (:func:`derain_utils.synth.backgrounds.random_crops`), and
2. a **fresh** rain layer for each crop from the training :class:`~derain_utils.synth.rain.RainSpec`
   (:func:`derain_utils.synth.rain.synthesize`),

and adds them (:func:`derain_utils.synth.rain.add_rain`). The network therefore sees an
unbounded stream of rain but only the backgrounds it was given: the number and
complexity of backgrounds is the only thing that differs between runs. Both draws
use one ``torch.Generator`` on the training device, seeded from ``seed``, and the
background tensor is moved to the device once, so no per-step host/device copy
happens.

Objective: L1 loss between the network output and the background, Adam, and a
cosine decay of the learning rate over ``steps`` (``CosineAnnealingLR``; an
optional linear warm-up of ``warmup_steps`` steps precedes it).

Precision and memory format (the fast path)
-------------------------------------------
A step runs in one of two precisions: ``"fp32"`` (plain float32) or ``"bf16"``
(the forward pass under ``torch.autocast(dtype=torch.bfloat16)``; weights, Adam
state and the L1 loss stay float32, and bfloat16 needs no gradient scaling).
``precision="auto"`` (the default) resolves with :func:`resolve_precision`:

1. an explicit ``"fp32"`` / ``"bf16"`` argument (an experiment's or profile's
   ``precision`` field) wins;
2. otherwise the environment variable ``DERAIN_PRECISION`` (``auto``, ``fp32`` or
   ``bf16``) decides, when set to fp32 or bf16;
3. otherwise the hardware: on CUDA ``bf16`` when ``torch.cuda.is_bf16_supported()``;
   on the CPU ``bf16`` only when :func:`cpu_bf16_support` finds native bfloat16
   arithmetic (the ``amx_bf16`` or ``avx512_bf16`` flag in ``/proc/cpuinfo``, a
   torch built with oneDNN, and a vectorised torch CPU capability); ``fp32``
   everywhere else (other CPUs emulate bfloat16 slowly; Apple MPS).

Weights and batches are stored channels-last (NHWC) on the CPU and on CUDA
(``memory_format="auto"``), which speeds up oneDNN's and cuDNN's convolutions in
both precisions; ``"contiguous"`` keeps NCHW. :class:`StepMode` carries the
resolved pair. On CUDA :func:`train` also turns on cuDNN's autotuner
(``torch.backends.cudnn.benchmark``) unless deterministic algorithms were requested
(:func:`seed_everything` with ``deterministic=True``). Evaluation (:func:`predict`,
:func:`evaluate`) always runs in float32 and NCHW: :func:`train` returns the model
in NCHW, so a model evaluated right after training and one reloaded from disk give
bitwise the same scores. The precision changes the trained weights (it is part of
an experiment's cache key); the memory format only the rounding of the convolutions.

Reproducibility and resumption
------------------------------
Given the same initial weights (seed the model yourself: ``torch.manual_seed(s)``
before :func:`derain_utils.nets.models.build_model`, or :func:`seed_everything`), the same
arguments and the same ``seed``, a CPU run is **bitwise** repeatable on the same
machine and thread count: same weights, same history (``elapsed_s`` aside, which
is wall-clock). On CUDA, rain rendering and some kernels use atomics, so runs agree
to float rounding only. With ``ckpt_dir`` the
state (model, optimiser, scheduler, data generator, global RNG, step, history,
unfinished log window) is written atomically to ``ckpt_dir/last.pt`` every
``ckpt_every`` steps and at the end; a later call with the same configuration
resumes from it and ends with bitwise the same weights and history as a run that
was never interrupted. The checkpoint carries a fingerprint of the configuration
(rain spec, steps, batch, patch, lr, seed, the training images' shape and
checksum, ...); resuming with anything different raises
:class:`CheckpointMismatchError` rather than silently mixing two runs.

Scoring a trained network is :mod:`derain_utils.measure.scoring` (:func:`~derain_utils.measure.scoring.evaluate`),
which applies it with :func:`predict`.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from derain_utils import store
from derain_utils.synth import backgrounds, rain

__all__ = [
    "PRECISIONS",
    "PRECISION_ENV",
    "MEMORY_FORMATS",
    "StepMode",
    "cpu_bf16_support",
    "resolve_precision",
    "resolve_memory_format",
    "resolve_mode",
    "CHECKPOINT_NAME",
    "CHECKPOINT_FORMAT",
    "HISTORY_COLUMNS",
    "CheckpointError",
    "CorruptCheckpointError",
    "CheckpointMismatchError",
    "TrainResult",
    "select_device",
    "seed_everything",
    "make_batch",
    "train",
    "predict",
    "load_checkpoint",
]

#: The precisions a training step can run in (see the module docstring).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
#: Environment variable that forces a precision when an argument says "auto".
PRECISION_ENV = "DERAIN_PRECISION"
#: Memory formats of weights and batches during training.
MEMORY_FORMATS: tuple[str, ...] = ("channels_last", "contiguous")
_PRECISION_ALIASES = {"fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16", "auto": "auto"}
_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")

CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = "derain_utils.training/1"  # a frozen format tag (older checkpoints carry it), not a module path
HISTORY_COLUMNS: tuple[str, ...] = ("step", "loss", "lr", "elapsed_s")
MAX_LOSS: float = 1.0
"""The largest mean L1 loss of a training window that is not a divergence: an output on the [0, 1] scale
cannot lose more than 1 against a target on it, so a window above it means outputs left the image scale
(lr far too high). A model starts near 0.03; in a tiny ResNet run (30 steps, 5 warm-up), lr = 10 reached
1e8 in its first window and came back to 0.6, a broken model, and lr = 1000 went from 6e21 to 55: the
check refuses both instead of caching them (only NaN or inf was caught before)."""
# --------------------------------------------------------------------------- errors


class CheckpointError(ValueError):
    """Base class of checkpoint problems (a ``ValueError``; the message names the file)."""


class CorruptCheckpointError(CheckpointError):
    """``last.pt`` exists but cannot be read or lacks required entries (delete it to start fresh)."""


class CheckpointMismatchError(CheckpointError):
    """``last.pt`` was written by a run with a different configuration."""


# --------------------------------------------------------------------------- devices and seeds


def select_device(device: str | torch.device | None = None) -> torch.device:
    """The device to compute on.

    Args:
        device: ``None`` (or ``"auto"``) picks CUDA if available, then Apple MPS,
            then the CPU. Otherwise a ``torch.device`` or a string such as ``"cpu"``,
            ``"cuda"``, ``"cuda:1"``, ``"mps"``.

    Raises:
        ValueError: ``device`` is not a valid device string, or names a backend
            that is not available on this machine (the message names it).
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device.strip())
        except (RuntimeError, ValueError) as exc:
            raise ValueError(
                f"device={device!r} is not a valid torch device; use None (auto), 'cpu', 'cuda', 'cuda:N' or 'mps'"
            ) from exc
    else:
        raise ValueError(f"device must be None, a str or a torch.device, got {type(device).__name__}: {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(dev)!r} requested but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={str(dev)!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device={str(dev)!r} requested but Apple MPS is not available on this machine")
    elif dev.type != "cpu":
        raise ValueError(f"device={str(dev)!r} is not supported; use 'cpu', 'cuda' or 'mps'")
    return dev


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and all CUDA devices).

    Call it before :func:`derain_utils.nets.models.build_model` to make the initial
    weights repeatable (:func:`train` seeds its own data generator from its ``seed``
    argument, but leaves the model's initialisation to the caller). With
    ``deterministic=True`` torch is also asked to use deterministic kernels
    (``torch.use_deterministic_algorithms(True, warn_only=True)``, cuDNN benchmark
    off), which matters on GPUs only; CPU training here is deterministic anyway.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


# --------------------------------------------------------------------------- precision and memory format


def _cpu_flags(path: str = "/proc/cpuinfo") -> set[str] | None:
    """The CPU feature flags of the first processor listed in ``path``, or None when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        return None
    return set()


def cpu_bf16_support(cpuinfo: str = "/proc/cpuinfo") -> tuple[bool, str]:
    """Whether this CPU runs bfloat16 natively in torch, and why: ``(supported, reason)``.

    True only when all hold: torch was built with oneDNN (``torch.backends.mkldnn``),
    torch's CPU kernels are vectorised (``torch.backends.cpu.get_cpu_capability()`` is
    not ``"DEFAULT"``), and ``cpuinfo`` (Linux's ``/proc/cpuinfo``) lists ``amx_bf16``
    (Intel AMX, Sapphire Rapids and later) or ``avx512_bf16`` (Cooper Lake, Zen 4 and
    later). Without ``/proc/cpuinfo`` (macOS, Windows) nothing is assumed: False.
    """
    if not torch.backends.mkldnn.is_available():
        return False, "torch was built without oneDNN (mkldnn)"
    get_cap = getattr(torch.backends.cpu, "get_cpu_capability", None)
    cap = get_cap() if get_cap is not None else "unknown"
    if cap == "DEFAULT":
        return False, "torch CPU capability is DEFAULT (no vector instructions)"
    flags = _cpu_flags(cpuinfo)
    if flags is None:
        return False, f"{cpuinfo} is not readable, so bfloat16 hardware support is unknown"
    found = [f for f in _CPU_BF16_FLAGS if f in flags]
    if not found:
        return False, f"neither {' nor '.join(_CPU_BF16_FLAGS)} in {cpuinfo}"
    return True, f"{' and '.join(found)} in {cpuinfo}, torch CPU capability {cap}, oneDNN"


def _check_precision(value: Any, name: str = "precision") -> str:
    """``value`` as "auto", "fp32" or "bf16" (None = "auto"; "float32"/"bfloat16" accepted)."""
    if value is None:
        return "auto"
    key = value.strip().lower() if isinstance(value, str) else None
    if key not in _PRECISION_ALIASES:
        raise ValueError(f"{name} must be 'auto', 'fp32' or 'bf16', got {value!r}")
    return _PRECISION_ALIASES[key]


def resolve_precision(precision: str | None = "auto", device: str | torch.device | None = None) -> str:
    """The precision a run uses: ``"fp32"`` or ``"bf16"``, never ``"auto"``.

    An explicit ``"fp32"``/``"bf16"`` is returned as is; ``"auto"`` (or None) defers to
    ``$DERAIN_PRECISION`` when that is ``fp32`` or ``bf16``, and otherwise to the
    hardware of ``device`` (:func:`select_device`): CUDA -> bf16 if the GPU supports
    it; CPU -> bf16 if :func:`cpu_bf16_support`; anything else fp32.

    Raises:
        ValueError: an unknown ``precision`` or ``$DERAIN_PRECISION`` value (named).
    """
    p = _check_precision(precision)
    if p == "auto":
        p = _check_precision(os.environ.get(PRECISION_ENV) or "auto", f"${PRECISION_ENV}")
    if p != "auto":
        return p
    dev = select_device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if dev.type == "cpu":
        return "bf16" if cpu_bf16_support()[0] else "fp32"
    return "fp32"


def resolve_memory_format(memory_format: str | None = "auto", device: str | torch.device | None = None) -> str:
    """``"channels_last"`` or ``"contiguous"``; ``"auto"`` (None) = channels-last on CPU and CUDA.

    Measured on the development CPU (AMX-BF16, one thread, 48 px x 16 crops, steps
    interleaved), channels-last made the training step of the quick ResNet 1.65x
    (fp32) and 1.87x (bf16) faster than NCHW, the quick UNet's 1.43x and 1.37x and
    the tiny SwinIR's (few convolutions) 1.10x and 1.03x; on an H200 it made the
    paper ResNet's bf16 step at batch 128 1.6x faster. MPS keeps NCHW.
    """
    if memory_format is None:
        memory_format = "auto"
    if memory_format == "auto":
        return "channels_last" if select_device(device).type in ("cpu", "cuda") else "contiguous"
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be 'auto', 'channels_last' or 'contiguous', got {memory_format!r}")
    return memory_format


@dataclass(frozen=True)
class StepMode:
    """How a training step runs: ``precision`` ("fp32"/"bf16") and ``memory_format``
    ("channels_last"/"contiguous"). Build one with :func:`resolve_mode`."""

    precision: str
    memory_format: str

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.memory_format not in MEMORY_FORMATS:
            raise ValueError(f"memory_format must be one of {MEMORY_FORMATS}, got {self.memory_format!r}")

    @property
    def torch_format(self) -> torch.memory_format:
        return torch.channels_last if self.memory_format == "channels_last" else torch.contiguous_format

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """bfloat16 autocast on ``device`` for "bf16", a no-op for "fp32"."""
        return _amp_context(device, self.precision == "bf16")

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """``model`` with its weights in this memory format (in place; returned for chaining)."""
        return model.to(memory_format=self.torch_format)

    def prepare(self, batch: Tensor) -> Tensor:
        """``batch`` (N, C, H, W) in this memory format (a copy only when the layout differs)."""
        return batch.contiguous(memory_format=self.torch_format)


def resolve_mode(
    precision: str | None = "auto", memory_format: str | None = "auto", device: str | torch.device | None = None
) -> StepMode:
    """The :class:`StepMode` of a run on ``device`` (see :func:`resolve_precision`, :func:`resolve_memory_format`)."""
    return StepMode(resolve_precision(precision, device), resolve_memory_format(memory_format, device))


# --------------------------------------------------------------------------- input checks


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _as_batch(images: Tensor | np.ndarray, name: str) -> Tensor:
    """A float32 (N, C, H, W) tensor in [0, 1], C in {1, 3}, from a tensor or an NHWC / NHW array."""
    if isinstance(images, np.ndarray):
        arr = images
        if arr.ndim == 3:  # (N, H, W) gray
            arr = arr[..., None]
        if arr.ndim != 4:
            raise ValueError(f"{name}: a numpy array must be (N, H, W, C) or (N, H, W), got shape {images.shape}")
        images = torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))
    if not isinstance(images, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor (N, C, H, W) or a numpy array, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have shape (N, C, H, W) with C = 1 or 3, got {tuple(images.shape)}")
    if images.shape[0] < 1:
        raise ValueError(f"{name} is empty (N = 0)")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor with values in [0, 1], got dtype {images.dtype}")
    images = images.float()
    lo, hi = torch.aminmax(images)
    if not (math.isfinite(lo.item()) and math.isfinite(hi.item())) or lo.item() < 0.0 or hi.item() > 1.0:
        raise ValueError(f"{name} values must lie in [0, 1], got min {lo.item():.4g}, max {hi.item():.4g}")
    return images


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


# --------------------------------------------------------------------------- the training step


def _amp_context(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``amp`` is true, else a no-op."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def make_batch(
    images: Tensor, spec: str | rain.RainSpec, batch_size: int, patch: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """One synthetic training batch, exactly as :func:`train` makes it: ``(rainy, background)``.

    Args:
        images: training backgrounds (N, C, h, w) in [0, 1], on the device to work on.
        spec: the rain preset name or RainSpec.
        batch_size: crops per batch.
        patch: crop side, px.
        generator: a ``torch.Generator`` on ``images.device`` (advanced).

    Returns:
        rainy, background: (batch_size, C, patch, patch) on ``images.device``.
        The crops are drawn first and then the rain, both from ``generator``: this
        order is part of a run's definition (changing it changes every later batch).
    """
    background = backgrounds.random_crops(images, batch_size, patch, generator)
    rain_layer, _mask = rain.synthesize(spec, patch, batch_size, generator, device=images.device)
    rainy = rain.add_rain(background, rain_layer)
    return rainy, background


def _optimize(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    rainy: Tensor,
    background: Tensor,
    mode: StepMode,
) -> Tensor:
    """One Adam step on L1(model(rainy), background) in ``mode``; returns the detached loss (0-d, on device).

    The model's weights must already be in ``mode``'s memory format (:meth:`StepMode.prepare_model`).
    """
    optimizer.zero_grad(set_to_none=True)
    rainy, background = mode.prepare(rainy), mode.prepare(background)
    with mode.autocast(rainy.device):
        derained = model(rainy)
    loss = F.l1_loss(derained.float(), background)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _make_scheduler(
    optimizer: torch.optim.Optimizer, steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine decay from ``lr`` towards 0 over ``steps`` (after an optional linear warm-up)."""
    if warmup_steps == 0:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=0.0)
    warm = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1.0 / (warmup_steps + 1), end_factor=1.0, total_iters=warmup_steps
    )
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps - warmup_steps, eta_min=0.0)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, cos], milestones=[warmup_steps])


# --------------------------------------------------------------------------- checkpoints


def _images_checksum(images: Tensor) -> str:
    arr = images.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.sha256(arr.tobytes()).hexdigest()[:16]


def _model_signature(model: nn.Module) -> str:
    """Architecture signature: class name plus every parameter/buffer name, shape and dtype."""
    parts = [type(model).__name__]
    parts += [f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in model.state_dict().items()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _fingerprint(**fields: Any) -> dict[str, Any]:
    """JSON-normalised (tuples -> lists) dict, so a stored copy compares equal to a fresh one."""
    return json.loads(json.dumps(fields, sort_keys=True))


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_REQUIRED_KEYS = ("format", "fingerprint", "step", "model", "optimizer", "scheduler", "generator",
                  "history", "window", "elapsed_s")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint written by :func:`train` (on the CPU).

    Raises:
        FileNotFoundError: ``path`` does not exist (named).
        CorruptCheckpointError: the file cannot be unpickled or lacks required
            entries (the message names the file and suggests deleting it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged zip/pickle
        raise CorruptCheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {_short(str(exc), 200)}); "
            f"delete it to start training from scratch"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CorruptCheckpointError(
            f"checkpoint {path} is not a {CHECKPOINT_FORMAT} checkpoint; delete it to start training from scratch"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CorruptCheckpointError(
            f"checkpoint {path} lacks entries {missing}; delete it to start training from scratch"
        )
    return ckpt


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (:func:`derain_utils.store.write_bytes`: a temporary file, fsync,
    ``os.replace``). A write that fails (a full disk) raises :class:`derain_utils.store.StoreError` naming the
    checkpoint, with no temporary file left; the previous checkpoint stays, so the run resumes from it."""
    buf = io.BytesIO()
    torch.save(state, buf)  # serialised in memory: a failing disk write is the store's error, with the path
    store.ensure_dir(path.parent, "checkpoint folder")
    try:
        store.write_bytes(path, buf.getvalue(), what="the training checkpoint")
    except store.StoreError as e:
        raise store.StoreError(f"{e}; a rerun resumes from the last checkpoint that was written") from e


def _check_fingerprint(path: Path, stored: Any, current: dict[str, Any]) -> None:
    if stored == current:
        return
    if not isinstance(stored, dict):
        raise CorruptCheckpointError(f"checkpoint {path} has a malformed fingerprint; delete it to start fresh")
    keys = sorted(set(stored) | set(current))
    diffs = [
        f"{k}: checkpoint {_short(stored.get(k, '<absent>'))} vs now {_short(current.get(k, '<absent>'))}"
        for k in keys
        if stored.get(k, "<absent>") != current.get(k, "<absent>")
    ]
    raise CheckpointMismatchError(
        f"checkpoint {path} was written by a different training configuration, so it cannot be resumed:\n  "
        + "\n  ".join(diffs)
        + f"\nTo start fresh, delete {path} or pass another ckpt_dir."
    )


# --------------------------------------------------------------------------- train


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained model (on ``device``, in eval mode).
        history: one row per logged step: ``step`` (1-based count of optimiser
            steps), ``loss`` (mean L1 loss over the steps since the previous row),
            ``lr`` (learning rate of the row's last step), ``elapsed_s``
            (wall-clock seconds since the run began, summed over resumed calls).
        device: the device trained on, as a string (``"cpu"``, ``"cuda"``, ...).
        wall_s: wall-clock seconds of this call.
        resumed_from: the checkpoint step this call resumed from, or None.
        step: optimiser steps completed (``< steps`` only when ``stop_after`` stopped early).
        complete: ``step == steps``.
        checkpoint: path of ``last.pt`` when ``ckpt_dir`` was given, else None.
        precision: the precision the steps ran in, ``"fp32"`` or ``"bf16"``.
        memory_format: ``"channels_last"`` or ``"contiguous"`` during training (the
            returned model is NCHW either way).
    """

    model: nn.Module
    history: pd.DataFrame
    device: str
    wall_s: float
    resumed_from: int | None = None
    step: int = 0
    complete: bool = True
    checkpoint: Path | None = None
    precision: str = "fp32"
    memory_format: str = "contiguous"


def _history_frame(rows: list[dict[str, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    return df.astype({"step": "int64", "loss": "float64", "lr": "float64", "elapsed_s": "float64"})


def train(
    model: nn.Module,
    train_images: Tensor | np.ndarray,
    rain_spec: str | rain.RainSpec,
    *,
    steps: int,
    batch_size: int,
    patch: int,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device | None = None,
    ckpt_dir: str | Path | None = None,
    ckpt_every: int | None = None,
    progress: bool = True,
    precision: str | None = "auto",
    memory_format: str | None = "auto",
    amp: bool | None = None,
    threads: int | None = None,
    callback: Callable[[int, float], Any] | None = None,
    log_every: int = 10,
    warmup_steps: int = 0,
    stop_after: int | None = None,
) -> TrainResult:
    """Train ``model`` to remove ``rain_spec`` rain from crops of ``train_images``.

    Each step draws ``batch_size`` random ``patch``-px crops (random flips) of the
    training backgrounds and fresh rain for each, then takes one Adam step on the
    L1 loss between ``model(rainy)`` and the crops (see the module docstring).

    Args:
        model: maps (N, C, H, W) rainy -> derained; its initial weights are the
            caller's business (seed before building it for repeatability).
        train_images: backgrounds (N, C, h, w) float in [0, 1], C = 1 (gray) or 3
            (RGB), with h, w >= ``patch``; a numpy (N, h, w, C) array also works.
            Moved to ``device`` once.
        rain_spec: the training rain, a :data:`derain_utils.synth.rain.PRESETS` name or a RainSpec.
        steps: total optimiser steps of the run (also the cosine period).
        batch_size: crops per step.
        patch: crop side, px.
        lr: peak learning rate of Adam (betas 0.9, 0.999; no weight decay).
        seed: seeds the one ``torch.Generator`` that draws crops, flips and rain.
        device: see :func:`select_device` (None = cuda > mps > cpu).
        ckpt_dir: folder for ``last.pt``; when it holds one, training resumes from
            it (after checking that it was written by the same configuration).
        ckpt_every: also checkpoint every this many steps (default: only at the
            end). Ignored without ``ckpt_dir``.
        progress: show a ``tqdm`` bar with the running loss.
        precision: ``"auto"`` (default), ``"fp32"`` or ``"bf16"``: see the module
            docstring and :func:`resolve_precision`.
        memory_format: ``"auto"`` (channels-last on CPU/CUDA), ``"channels_last"``
            or ``"contiguous"`` (:func:`resolve_memory_format`).
        amp: older spelling of ``precision``: True = "bf16", False = "fp32"; None
            (default) leaves ``precision`` in charge. Contradicting ``precision`` is a ValueError.
        threads: ``torch.set_num_threads`` for this call on the CPU (restored afterwards).
        callback: ``callback(step, loss)`` after every step (``loss`` a float; the
            step's checkpoint, if any, is already written). An exception it raises
            stops training and propagates (the tests use it to simulate a crash).
        log_every: history granularity: one row every this many steps, plus the last step.
        warmup_steps: linear warm-up from ``lr / (warmup_steps + 1)`` to ``lr``
            before the cosine decay (0 = none, the default).
        stop_after: run at most this many steps in this call, then checkpoint
            (when ``ckpt_dir``) and return; a later call resumes. For time slicing.

    Returns:
        :class:`TrainResult`.

    Raises:
        ValueError: a bad argument (named); :class:`CheckpointMismatchError` when
            ``ckpt_dir/last.pt`` belongs to another configuration;
            :class:`CorruptCheckpointError` when it cannot be read.
        FloatingPointError: the loss became NaN/inf (the step and lr are named).
    """
    t_call = time.perf_counter()
    steps = _check_int("steps", steps, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    patch = _check_int("patch", patch, 1)
    seed = _check_int("seed", seed, 0)
    log_every = _check_int("log_every", log_every, 1)
    warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
    if warmup_steps >= steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) must be smaller than steps ({steps})")
    if ckpt_every is not None:
        ckpt_every = _check_int("ckpt_every", ckpt_every, 1)
    if stop_after is not None:
        stop_after = _check_int("stop_after", stop_after, 1)
    if threads is not None:
        threads = _check_int("threads", threads, 1)
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite float, got {lr!r}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable(step, loss), got {callback!r}")
    images_in = _as_batch(train_images, "train_images")
    if images_in.shape[2] < patch or images_in.shape[3] < patch:
        raise ValueError(
            f"patch ({patch} px) is larger than the training images ({images_in.shape[2]} x {images_in.shape[3]} px)"
        )
    spec = rain.get_spec(rain_spec)
    dev = select_device(device)
    if amp is not None:
        requested = _check_precision(precision)
        implied = "bf16" if amp else "fp32"
        if requested not in ("auto", implied):
            raise ValueError(f"amp={amp!r} contradicts precision={precision!r}; give only precision")
        precision = implied
    mode = resolve_mode(precision, memory_format, dev)
    if dev.type == "cuda" and not torch.are_deterministic_algorithms_enabled():
        torch.backends.cudnn.benchmark = True  # fixed shapes every step: let cuDNN pick its fastest kernels
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")

    fingerprint = _fingerprint(
        rain_spec=spec.to_dict(),
        steps=steps,
        batch_size=batch_size,
        patch=patch,
        lr=float(lr),
        seed=seed,
        warmup_steps=warmup_steps,
        log_every=log_every,
        precision=mode.precision,
        memory_format=mode.memory_format,
        device_type=dev.type,
        images_shape=list(images_in.shape),
        images_sha256=_images_checksum(images_in),
        model=_model_signature(model),
    )
    ckpt_path = Path(ckpt_dir) / CHECKPOINT_NAME if ckpt_dir is not None else None

    old_threads = torch.get_num_threads()
    if threads is not None and dev.type == "cpu":
        torch.set_num_threads(threads)
    try:
        mode.prepare_model(model.to(dev))
        images = images_in.to(dev)
        generator = torch.Generator(device=dev)
        generator.manual_seed(seed)
        optimizer = torch.optim.Adam(params, lr=float(lr))
        scheduler = _make_scheduler(optimizer, steps, warmup_steps)

        step = 0
        history: list[dict[str, float]] = []
        window: list[Tensor] = []  # 0-d losses of the steps since the last history row
        elapsed_before = 0.0
        resumed_from: int | None = None
        if ckpt_path is not None and ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path)
            _check_fingerprint(ckpt_path, ckpt["fingerprint"], fingerprint)
            try:
                model.load_state_dict(ckpt["model"])
                optimizer.load_state_dict(ckpt["optimizer"])
                scheduler.load_state_dict(ckpt["scheduler"])
                generator.set_state(ckpt["generator"])
                if "torch_rng" in ckpt:
                    torch.set_rng_state(ckpt["torch_rng"])
                if dev.type == "cuda" and "cuda_rng" in ckpt:
                    torch.cuda.set_rng_state(ckpt["cuda_rng"], dev)
            except (RuntimeError, KeyError, ValueError, TypeError) as exc:
                raise CorruptCheckpointError(
                    f"checkpoint {ckpt_path} could not be restored ({type(exc).__name__}: {_short(str(exc), 200)}); "
                    f"delete it to start training from scratch"
                ) from exc
            step = resumed_from = int(ckpt["step"])
            history = [dict(r) for r in ckpt["history"]]
            window = [w.to(dev) for w in ckpt["window"].unbind()] if ckpt["window"].numel() else []
            elapsed_before = float(ckpt["elapsed_s"])

        def elapsed() -> float:
            return elapsed_before + (time.perf_counter() - t_call)

        def save() -> None:
            if ckpt_path is None:
                return
            state = {
                "format": CHECKPOINT_FORMAT,
                "fingerprint": fingerprint,
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": history,
                "window": torch.stack(window).cpu() if window else torch.zeros(0),
                "elapsed_s": elapsed(),
            }
            if dev.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state(dev)
            _save_checkpoint(ckpt_path, state)

        end = steps if stop_after is None else min(steps, step + stop_after)
        with tqdm(total=steps, initial=step, disable=not progress, desc="train", unit="step",
                  dynamic_ncols=True, leave=False) as bar:
            model.train()
            while step < end:
                rainy, background = make_batch(images, spec, batch_size, patch, generator)
                step_lr = optimizer.param_groups[0]["lr"]
                loss = _optimize(model, optimizer, rainy, background, mode)
                scheduler.step()
                step += 1
                window.append(loss)
                if step % log_every == 0 or step == steps:
                    mean = torch.stack(window).cpu().double().mean().item()
                    if not math.isfinite(mean) or mean > MAX_LOSS:
                        raise FloatingPointError(
                            f"training diverged: mean loss {mean:.4g} over steps {step - len(window) + 1}-{step} "
                            f"(lr={step_lr:.3g}; above {MAX_LOSS:g}, the most an output on the [0, 1] scale "
                            f"can lose, the outputs left the image scale); lower lr or add warmup_steps"
                        )
                    history.append({"step": step, "loss": mean, "lr": float(step_lr), "elapsed_s": elapsed()})
                    window = []
                    bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
                if ckpt_path is not None and (step == end or (ckpt_every is not None and step % ckpt_every == 0)):
                    save()
                bar.update(1)
                if callback is not None:
                    callback(step, float(loss.item()))
    finally:
        if threads is not None and dev.type == "cpu":
            torch.set_num_threads(old_threads)
    model.to(memory_format=torch.contiguous_format)  # evaluation and saved weights are NCHW
    model.eval()
    return TrainResult(
        model=model,
        history=_history_frame(history),
        device=str(dev),
        wall_s=time.perf_counter() - t_call,
        resumed_from=resumed_from,
        step=step,
        complete=step == steps,
        checkpoint=ckpt_path,
        precision=mode.precision,
        memory_format=mode.memory_format,
    )


# --------------------------------------------------------------------------- predict & evaluate


def predict(
    model: nn.Module, rainy: Tensor | np.ndarray, *, device: str | torch.device | None = None, batch_size: int = 32
) -> Tensor:
    """Run ``model`` on ``rainy`` for evaluation: eval mode, no gradients, clamped to [0, 1].

    Args:
        model: any module mapping (N, C, H, W) -> (N, C, H, W).
        rainy: (N, C, H, W) float in [0, 1] (or numpy (N, H, W, C)).
        device: where to compute; None = where the model's parameters already are
            (CPU for a parameter-free module). An explicit device moves the model there.
        batch_size: images per forward pass.

    Returns:
        derained (N, C, H, W) float32 on the CPU. The model's train/eval mode is restored.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    x = _as_batch(rainy, "rainy")
    if device is None:
        dev = _model_device(model)
    else:
        dev = select_device(device)
        model.to(dev)
    was_training = model.training
    model.eval()
    outs = []
    try:
        with torch.inference_mode():
            for chunk in x.split(batch_size):
                y = model(chunk.to(dev))
                if y.shape != chunk.shape:
                    raise ValueError(f"model output shape {tuple(y.shape)} != input shape {tuple(chunk.shape)}")
                outs.append(y.float().clamp(0.0, 1.0).cpu())  # out of place: y may alias the input
    finally:
        model.train(was_training)
    return torch.cat(outs)
