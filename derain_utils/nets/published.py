"""Published deraining networks: their authors' weights, as checksummed data, in this package's models.

Every other network of the monograph is one it trained itself, small and briefly. This module brings in
networks the field publishes. Their weights are *data*, like the image sets: entries of the registry
(``data/registry.tsv``, set ``checkpoints_prenet``, fetched with ``python -m derain_utils.synth.data fetch
checkpoints_prenet``), found offline under ``$DERAIN_DATA/checkpoints_prenet/``, never copied into the
repository. Each file's sha256 is checked against the registry before it is loaded, and the state dict
loads with ``strict=True`` into an architecture written here from the paper's description
(:class:`~derain_utils.nets.models.PReNetDerain`).

Names
-----
:data:`PUBLISHED` maps a name (``"prenet:rain100H"``) to a :class:`PublishedNet`: the architecture, the
weights file, what it was trained on, and its published scores. :func:`load` builds and loads one, and
returns the model with a provenance record (file, bytes, sha256, URL). The same path takes *any*
published network a user has weights for (:func:`load_weights`: a state dict, optionally wrapped in a
``state_dict``/``model`` entry or saved with a DataParallel ``module.`` prefix, into any ``nn.Module``):
the report card's ``module:callable --weights FILE`` and the ``module:callable@FILE`` form of
:func:`split_spec`, which notebook 04's list of published networks also accepts, so that adding a
network there is one line.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from derain_utils.nets import models
from derain_utils.synth import data

__all__ = [
    "PublishedNet",
    "PUBLISHED",
    "is_published",
    "split_spec",
    "weights_file",
    "load_weights",
    "load",
    "published_table",
    "one_line",
    "import_model",
]

_PRENET_CITATION = ("Ren, Zuo, Hu, Zhu & Meng, Progressive Image Deraining Networks: A Better and Simpler "
                    "Baseline, CVPR 2019")


@dataclass(frozen=True)
class PublishedNet:
    """One published network: where its weights are and what it was trained on.

    Attributes:
        name: its name here, ``family:training set`` (``"prenet:rain100H"``).
        arch: the :func:`~derain_utils.nets.models.build_model` name; its default size is the published one.
        set: the registry set holding the weights; ``file`` their path inside it.
        trained_on: the training set, in words; ``train_pairs`` / ``train_backgrounds`` its size.
        rain: the training rain, in words (as published).
        dev_pairs: the development paired set drawn from the same benchmark as the training set (its rain is of
            the training kind: the rain meter measures it there), or None when the development data has none.
        published: ``{test set: (PSNR-Y dB, SSIM-Y)}`` as published, on the full test set.
        citation: the paper.
    """

    name: str
    arch: str
    set: str
    file: str
    trained_on: str
    train_pairs: int
    train_backgrounds: int
    rain: str
    dev_pairs: str | None
    published: Mapping[str, tuple[float, float]]
    citation: str


PUBLISHED: dict[str, PublishedNet] = {
    net.name: net for net in (
        PublishedNet("prenet:rain100L", "prenet", "checkpoints_prenet", "rain100L/net_latest.pth",
                     "Rain100L train (JORDER)", 200, 200, "light rain, one streak direction", "rain100L_dev",
                     {"Rain100L": (37.48, 0.979)}, _PRENET_CITATION),
        PublishedNet("prenet:rain100H", "prenet", "checkpoints_prenet", "rain100H/net_latest.pth",
                     "Rain100H train (JORDER, RainTrainH)", 1800, 1800, "heavy rain, five streak directions",
                     "rain100H_dev", {"Rain100H": (29.46, 0.899)}, _PRENET_CITATION),
        PublishedNet("prenet:rain1400", "prenet", "checkpoints_prenet", "rain1400/net_latest.pth",
                     "Rain1400 train (DDN)", 12600, 900, "14 rain types per background", None,
                     {"Rain1400": (32.60, 0.946)}, _PRENET_CITATION),
    )
}
"""The published networks this package knows by name (weights: PROVENANCE.md of ``checkpoints_prenet``)."""


def is_published(spec: Any) -> bool:
    """Whether ``spec`` names a network of :data:`PUBLISHED`."""
    return isinstance(spec, str) and spec in PUBLISHED


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"module:callable@weights.pth"`` -> ``("module:callable", "weights.pth")``; no ``@``: ``(spec, None)``."""
    model, sep, weights = str(spec).rpartition("@")
    if not sep:
        return str(spec), None
    if not model or not weights:
        raise ValueError(f"model {spec!r}: the form is 'module:callable@path/to/weights' (both parts non-empty)")
    return model, weights


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown published network {name!r}; known: {', '.join(PUBLISHED)}")


def weights_file(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The weights file of published network ``name`` under the data root (``$DERAIN_DATA``).

    Raises:
        ValueError: an unknown name (lists the known ones).
        FileNotFoundError: no data root, or the file is not in it; the message names the file and the
            command that fetches it.
    """
    if not is_published(name):
        raise _unknown(name)
    net = PUBLISHED[name]
    root = data.data_root(data_dir)
    fetch = f"python -m derain_utils.synth.data fetch {net.set} --dest DIR, then export {data.ENV_DATA}=DIR"
    if root is None:
        raise FileNotFoundError(f"{name}: its weights {net.set}/{net.file} are looked for under ${data.ENV_DATA}, "
                                f"which is not set; fetch them ({fetch})")
    path = root / net.set / net.file
    if not path.is_file():
        raise FileNotFoundError(f"{name}: weights file {str(path)!r} does not exist; fetch it ({fetch})")
    return path


def _state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a loaded checkpoint: the object itself, or its ``state_dict``/``model`` entry."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"weights file {str(path)!r} holds no state dict (a mapping of parameter names to tensors)")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):  # saved from nn.DataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_weights(model: nn.Module, path: str | os.PathLike, *, sha256: str | None = None) -> dict[str, Any]:
    """Load a weights file into ``model`` with ``strict=True``; return where they came from.

    The file is read with ``torch.load(weights_only=True)`` on the CPU (no code in it runs). ``sha256``: the
    file's checksum when the caller has already computed it (it is not hashed again).

    Returns:
        ``{"file", "bytes", "sha256"}`` of the file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read as weights, or its keys or shapes do not fit ``model`` (the
            message names the file and the first missing, unexpected or mis-shaped keys).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a bad input, named
        raise ValueError(f"weights file {str(path)!r} cannot be read by torch.load(weights_only=True): "
                         f"{' '.join(str(e).split())[:300]}") from e
    sd = _state_dict(obj, path)
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and
              sd[k].shape != own[k].shape]
    if missing or extra or shapes:
        parts = [f"{what} {', '.join(keys[:4])}{' …' if len(keys) > 4 else ''}" for what, keys in
                 (("missing keys", missing), ("unexpected keys", extra), ("shapes differ:", shapes)) if keys]
        raise ValueError(f"weights file {str(path)!r} does not fit {type(model).__name__}: {'; '.join(parts)}")
    model.load_state_dict(sd, strict=True)
    return {"file": str(path), "bytes": path.stat().st_size, "sha256": sha256 or data.sha256_file(path)}


def load(name: str, data_dir: str | os.PathLike | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Published network ``name``: the model (eval mode, CPU) and its provenance.

    The file's sha256 must equal the registry's: another file under the same name is refused, never scored.

    Returns:
        ``(model, record)``; the record holds ``name``, ``file``, ``bytes``, ``sha256``, ``url`` (the pinned
        public copy), ``registry_sha256``, ``trained_on``, ``citation``.

    Raises:
        ValueError: an unknown name, a checksum that does not match the registry, or weights that do not fit.
        FileNotFoundError: the weights are not under the data root (see :func:`weights_file`).
    """
    path = weights_file(name, data_dir)
    net = PUBLISHED[name]
    reg = data.load_registry()
    row = reg[(reg["set"] == net.set) & (reg["file"] == net.file)]
    if row.empty:  # pragma: no cover - a test keeps PUBLISHED and the registry in step
        raise ValueError(f"{name}: {net.set}/{net.file} is not in the registry {data.REGISTRY_PATH}")
    expected = str(row["sha256"].iloc[0])
    actual = data.sha256_file(path)  # hashed once: load_weights is told it
    if actual != expected:
        raise ValueError(f"{name}: weights file {str(path)!r} does not match the registry's sha256 {expected[:12]}…; "
                         f"it is not the published file (fetch it again: python -m derain_utils.synth.data fetch "
                         f"{net.set})")
    model = models.build_model(net.arch)
    record = load_weights(model, path, sha256=actual)
    record.update(name=name, url=str(row["url"].iloc[0]), registry_sha256=expected, trained_on=net.trained_on,
                  citation=net.citation)
    return model.eval(), record


def published_table() -> list[dict[str, Any]]:
    """One record per published network: name, training set, its size and rain, published scores."""
    return [{"network": n.name, "trained on": n.trained_on, "pairs": n.train_pairs,
             "backgrounds": n.train_backgrounds, "rain": n.rain,
             "published": "; ".join(f"{k} {p:.2f} dB / {s:.3f}" for k, (p, s) in n.published.items())}
            for n in PUBLISHED.values()]


# --------------------------------------------------------------------------- any network, from its code


def one_line(err: BaseException) -> str:
    """``TypeName: message`` on one line (a SyntaxError names its file and line)."""
    text = " ".join(str(err).split())
    if isinstance(err, SyntaxError) and err.lineno is not None and "line" not in text:
        text = f"{text} (line {err.lineno})"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _call_factory(obj: Any, name: str, text: str) -> nn.Module:
    """``obj()`` for an ``nn.Module`` subclass or a zero-argument factory; every failure named."""
    try:
        model = obj()
    except TypeError as e:
        raise ValueError(f"model {text!r}: {name} must be an nn.Module or a zero-argument callable "
                         f"returning one ({e})") from e
    except Exception as e:  # noqa: BLE001 - the user's constructor failed
        raise ValueError(f"model {text!r}: calling {name}() raised {one_line(e)}") from e
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {text!r}: {name}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _import_attr(spec: str) -> tuple[Any, str]:
    """``module:attr`` or ``file.py:attr`` -> (object, readable name)."""
    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise ValueError(f"model {spec!r} must be a path or 'module:callable'")
    if mod_name.endswith(".py"):
        file = Path(mod_name).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"model {spec!r}: file {str(file)!r} does not exist")
        mspec = importlib.util.spec_from_file_location(f"_derain_model_{file.stem}", file)
        if mspec is None or mspec.loader is None:
            raise ValueError(f"model {spec!r}: cannot import {str(file)!r}")
        module = importlib.util.module_from_spec(mspec)
        try:
            mspec.loader.exec_module(module)  # runs the file: the report card executes the code it is given
        except Exception as e:  # noqa: BLE001 - any error in the user's file is a bad input, named
            raise ValueError(f"model {spec!r}: running {str(file)!r} raised {one_line(e)}") from e
    else:
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())  # `python -m` puts the cwd first; a console script does not
        try:
            module = importlib.import_module(mod_name)
        except ImportError as e:
            raise ValueError(f"model {spec!r}: cannot import module {mod_name!r}: {e}") from e
        except Exception as e:  # noqa: BLE001 - the module itself raised while being imported
            raise ValueError(f"model {spec!r}: importing module {mod_name!r} raised {one_line(e)}") from e
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model {spec!r}: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj, f"{Path(mod_name).stem if mod_name.endswith('.py') else mod_name}:{attr}"


def import_model(spec: str) -> tuple[nn.Module, str]:
    """``module:attr`` or ``file.py:attr`` -> ``(model, readable name)``.

    ``attr`` is an ``nn.Module`` instance, an ``nn.Module`` subclass or a zero-argument callable returning
    one. Importing runs the user's code; every failure is a ValueError (FileNotFoundError for a missing
    file) naming the spec.
    """
    obj, name = _import_attr(spec)
    if isinstance(obj, nn.Module):
        return obj, name
    if isinstance(obj, type) and issubclass(obj, nn.Module) or callable(obj):
        return _call_factory(obj, name, spec), name
    raise ValueError(f"model {spec!r}: {name} is a {type(obj).__name__}, not an nn.Module or a callable")
