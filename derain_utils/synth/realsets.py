"""Real image sets: paired benchmarks (rainy and clean) and real rainy photographs (no ground truth).

A benchmark such as Rain100L ships a rainy image and its clean background per scene, in two
sub-folders whose files share a stem: ``input/16.png`` with ``target/16.png``.
:func:`paired_set` accepts any such folder (the sub-folder names in :data:`INPUT_DIRS` and
:data:`TARGET_DIRS` are recognised) and checks that every file has its partner.
:func:`paired_sets` opens any number of such folders and :func:`load_pairs` reads every pair of all
of them, optionally resampled (:func:`rescale_pair`). Real rainy photographs without a clean
counterpart are a plain folder of images (:func:`unpaired_set`).

Folders are named relative to ``$DERAIN_DATA`` or given as paths (:func:`resolve_folder`). What rain
a paired set holds is measured by :mod:`derain_utils.measure.rainmeter`; outputs on these sets are
scored by :mod:`derain_utils.measure.realscores`.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from derain_utils.synth import backgrounds
from derain_utils.synth.data import data_root

__all__ = [
    "INPUT_DIRS",
    "TARGET_DIRS",
    "resolve_folder",
    "PairedSet",
    "paired_set",
    "is_paired_folder",
    "unpaired_set",
    "resize_long_side",
    "Pair",
    "paired_sets",
    "load_pairs",
    "rescale_pair",
]

INPUT_DIRS: tuple[str, ...] = ("input", "rainy", "rain", "data")
"""Recognised names of the sub-folder holding the rainy images of a paired set (first match wins)."""


TARGET_DIRS: tuple[str, ...] = ("target", "gt", "groundtruth", "norain", "clean", "label")
"""Recognised names of the sub-folder holding the clean backgrounds of a paired set."""


def resolve_folder(folder: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """An image-set folder given as a path, or as a set name under the data root.

    ``folder`` is used as is when it is an existing folder; otherwise it is looked up as
    ``<data_dir or $DERAIN_DATA>/<folder>`` (e.g. ``"rain100L_dev"``).

    Raises:
        FileNotFoundError: neither exists (the message names both places tried).
    """
    if not isinstance(folder, (str, os.PathLike)) or not str(folder).strip():
        raise ValueError(f"folder must be a non-empty path or set name, got {folder!r}")
    p = Path(folder).expanduser()
    if p.is_dir():
        return p.resolve()
    root = data_root(data_dir)
    if root is not None and (root / str(folder)).is_dir():
        return (root / str(folder)).resolve()
    where = f" nor in the data root {str(root)!r}" if root is not None else \
        " and no data root is set (pass data_dir or set DERAIN_DATA)"
    raise FileNotFoundError(f"image set {str(folder)!r} is not an existing folder{where}")


def _images_in(folder: Path) -> dict[str, Path]:
    """stem -> file for the images directly inside ``folder`` (suffixes of backgrounds.IMAGE_EXTENSIONS)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in backgrounds.IMAGE_EXTENSIONS:
            if p.stem in out:
                raise ValueError(f"folder {str(folder)!r} holds two images with the stem {p.stem!r}: "
                                 f"{out[p.stem].name} and {p.name}")
            out[p.stem] = p
    return out


def _find_sub(root: Path, names: Sequence[str]) -> Path | None:
    for n in names:
        for cand in (root / n, root / n.capitalize(), root / n.upper()):
            if cand.is_dir():
                return cand
    return None


def _natural_key(stem: str) -> tuple:
    """Sort ``2`` before ``10`` (numeric stems), other stems alphabetically after."""
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


@dataclass(frozen=True)
class PairedSet:
    """A folder of (rainy, clean) pairs matched by file stem.

    Attributes:
        name: the set's name (the folder name).
        root: the folder; input_dir / target_dir: its two sub-folders.
        names: the shared stems, in natural order (``2`` before ``10``).
    """

    name: str
    root: Path
    input_dir: Path
    target_dir: Path
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    def paths(self, i: int) -> tuple[Path, Path]:
        """(rainy file, target file) of pair ``i``."""
        stem = self.names[i]
        return _images_in(self.input_dir)[stem], _images_in(self.target_dir)[stem]

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair ``i`` as ``(rainy, target)``, float32 (H, W, 3) in [0, 1].

        Raises:
            ValueError: the two files differ in size (names both).
        """
        a, b = self.paths(i)
        rainy, target = backgrounds.load_image(a), backgrounds.load_image(b)
        if rainy.shape != target.shape:
            raise ValueError(f"pair {self.names[i]!r}: {str(a)!r} is {rainy.shape[:2]} (HxW) but "
                             f"{str(b)!r} is {target.shape[:2]}")
        return rainy, target

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yields ``(name, rainy, target)``."""
        for i, n in enumerate(self.names):
            yield (n, *self.load(i))


def is_paired_folder(folder: str | os.PathLike) -> bool:
    """Does ``folder`` hold an input-like and a target-like sub-folder (see :data:`INPUT_DIRS`)?"""
    p = Path(folder)
    return p.is_dir() and _find_sub(p, INPUT_DIRS) is not None and _find_sub(p, TARGET_DIRS) is not None


def paired_set(
    folder: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    input_dir: str | None = None,
    target_dir: str | None = None,
) -> PairedSet:
    """Open a folder of ``input/``-``target/`` pairs (any names of :data:`INPUT_DIRS` / :data:`TARGET_DIRS`).

    Args:
        folder: a folder path, or a set name under the data root (:func:`resolve_folder`).
        data_dir: the data root for set names (default ``$DERAIN_DATA``).
        input_dir, target_dir: explicit sub-folder names, overriding the recognised ones.

    Raises:
        FileNotFoundError: the folder or a sub-folder is missing (named).
        ValueError: no images, or a file without its partner (names the files).
    """
    root = resolve_folder(folder, data_dir)
    subs = []
    for given, names, what in ((input_dir, INPUT_DIRS, "input_dir"), (target_dir, TARGET_DIRS, "target_dir")):
        sub = (root / given) if given else _find_sub(root, names)
        if sub is None or not sub.is_dir():
            tried = [given] if given else list(names)
            raise FileNotFoundError(f"paired set {str(root)!r}: no {what} sub-folder (tried {tried}); a paired set "
                                    f"holds rainy images in input/ and clean ones with the same names in target/")
        subs.append(sub)
    inputs, targets = _images_in(subs[0]), _images_in(subs[1])
    if not inputs:
        raise ValueError(f"paired set {str(root)!r}: {str(subs[0])!r} holds no images")
    lonely = sorted(set(inputs) ^ set(targets))
    if lonely:
        show = [str((inputs.get(s) or targets.get(s))) for s in lonely[:5]]
        raise ValueError(f"paired set {str(root)!r}: {len(lonely)} file(s) without a partner of the same stem, "
                         f"e.g. {show}")
    names = tuple(sorted(inputs, key=_natural_key))
    return PairedSet(name=root.name, root=root, input_dir=subs[0], target_dir=subs[1], names=names)


def unpaired_set(folder: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> backgrounds.ImageFolder:
    """The images directly inside a folder of real rainy photos (a path or a set name under the data root)."""
    root = resolve_folder(folder, data_dir)
    return backgrounds.ImageFolder(root)


def resize_long_side(img: np.ndarray, long_side: int | None) -> np.ndarray:
    """Downscale ``img`` (H, W, C) so that its long side is at most ``long_side`` px (never upscale).

    Pillow's Lanczos filter on 8-bit-exact float data would quantise, so the resize is done on
    float32 per channel (``PIL.Image`` mode ``F``, Lanczos). ``None`` or 0 returns ``img`` unchanged.
    """
    from PIL import Image

    if long_side is None or long_side == 0:
        return img
    if isinstance(long_side, bool) or not isinstance(long_side, (int, np.integer)) or long_side < 8:
        raise ValueError(f"long_side must be None, 0 or an int >= 8 px, got {long_side!r}")
    h, w = img.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    a = img if img.ndim == 3 else img[..., None]
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(a[..., c], np.float32), mode="F")
                               .resize(size, Image.Resampling.LANCZOS)) for c in range(a.shape[-1])], -1)
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return out if img.ndim == 3 else out[..., 0]


@dataclass(frozen=True)
class Pair:
    """One (rainy, target) pair of a paired set, float32 (H, W, 3) in [0, 1]."""

    set: str
    name: str
    rainy: np.ndarray
    target: np.ndarray


def paired_sets(
    folders: str | os.PathLike | Sequence[str | os.PathLike | PairedSet],
    data_dir: str | os.PathLike | None = None,
    *,
    missing: str = "error",
) -> list[PairedSet]:
    """Open any number of paired folders (:func:`paired_set` each), in the order given.

    Args:
        folders: one folder, or a sequence of folder paths, set names under the data root
            (``"rain100L_dev"``) or :class:`PairedSet` objects.
        data_dir: the data root for set names (default ``$DERAIN_DATA``).
        missing: ``"error"`` raises for a folder that does not exist; ``"skip"`` leaves out a
            bare set *name* that the data root lacks, with a warning (an explicit path that does
            not exist is always an error: it is a typo, not an absent optional set).

    Raises:
        FileNotFoundError: a missing folder (see ``missing``).
        ValueError: two folders with the same name (their pairs could not be told apart in a
            table; names both), a bad ``missing``, or a folder that is not a paired set.
    """
    import warnings

    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    items = [folders] if isinstance(folders, (str, os.PathLike, PairedSet)) else list(folders)
    out: list[PairedSet] = []
    for item in items:
        if isinstance(item, PairedSet):
            out.append(item)
            continue
        try:
            out.append(paired_set(item, data_dir))
        except FileNotFoundError as err:
            bare = isinstance(item, str) and "/" not in item and os.sep not in item and not Path(item).exists()
            if missing == "skip" and bare and "is not an existing folder" in str(err):
                warnings.warn(f"paired set {item!r} skipped: {err}", stacklevel=2)
                continue
            raise
    seen: dict[str, Path] = {}
    for ps in out:
        if ps.name in seen and seen[ps.name] != ps.root:
            raise ValueError(f"two paired sets share the name {ps.name!r}: {str(seen[ps.name])!r} and "
                             f"{str(ps.root)!r}; rename one folder")
        seen[ps.name] = ps.root
    return list({ps.root: ps for ps in out}.values())  # the same folder twice is used once


def load_pairs(
    sets: str | os.PathLike | Sequence[str | os.PathLike | PairedSet],
    data_dir: str | os.PathLike | None = None,
    *,
    max_pairs: int | None = None,
    factor: float | dict[str, float] = 1.0,
) -> list[Pair]:
    """Every pair of every paired set (:func:`paired_sets`), optionally resampled.

    Args:
        sets: folders, set names or :class:`PairedSet` objects.
        data_dir: the data root for set names.
        max_pairs: at most this many pairs per set, in name order (None: all).
        factor: resampling factor for every set, or ``{set name: factor}`` (sets not named keep
            1.0); see :func:`rescale_pair` and :func:`match_scale`.

    Returns:
        :class:`Pair` records, set by set, pairs in natural name order.
    """
    if max_pairs is not None and (isinstance(max_pairs, bool) or not isinstance(max_pairs, (int, np.integer))
                                  or max_pairs < 1):
        raise ValueError(f"max_pairs must be None or an int >= 1, got {max_pairs!r}")
    out = []
    for ps in paired_sets(sets, data_dir):
        f = factor.get(ps.name, 1.0) if isinstance(factor, dict) else factor
        for i in range(min(len(ps), max_pairs or len(ps))):
            rainy, target = ps.load(i)
            if f != 1.0:
                rainy, target = rescale_pair(rainy, target, f)
            out.append(Pair(ps.name, ps.names[i], rainy, target))
    return out


def rescale_pair(rainy: np.ndarray, target: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample a (rainy, target) pair by ``factor`` (< 1 shrinks), identically for both.

    ``skimage.transform.rescale`` with a gaussian anti-aliasing prefilter when shrinking
    (sigma ``(1/factor - 1)/2``, scikit-image's default) and bilinear interpolation; values stay in
    [0, 1]. Both images go through the same operation, so the rain layer ``rainy - target`` is
    resampled exactly as the images are (the transform is linear before the final clip).

    Raises:
        ValueError: a factor that is not a finite number > 0, images of different shapes, or a
            factor that would leave fewer than 8 px on a side.
    """
    from skimage.transform import rescale

    if isinstance(factor, bool) or not isinstance(factor, (int, float, np.floating)) or not (
            math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a finite number > 0, got {factor!r}")
    o, b = np.asarray(rainy), np.asarray(target)
    if o.shape != b.shape or o.ndim not in (2, 3):
        raise ValueError(f"rainy {o.shape} and target {b.shape} must be images of the same shape")
    if factor == 1.0:
        return o.astype(np.float32, copy=False), b.astype(np.float32, copy=False)
    if min(o.shape[:2]) * factor < 8:
        raise ValueError(f"factor={factor:g} would shrink a {o.shape[0]}x{o.shape[1]} pair below 8 px")
    kw = dict(order=1, anti_aliasing=factor < 1, channel_axis=-1 if o.ndim == 3 else None, mode="reflect",
              preserve_range=True)
    out = [np.clip(rescale(x.astype(np.float64), float(factor), **kw), 0.0, 1.0).astype(np.float32) for x in (o, b)]
    return out[0], out[1]
