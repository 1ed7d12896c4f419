"""Backgrounds B: where the clean images come from, and how they are split.

A deraining network is trained on pairs ``rainy = clip(background + rain)``. The
study (Gu et al., NeurIPS 2023) varies only the **backgrounds**: how many, and how
complex. Its claim: with many or complex backgrounds the network "slacks off" --
it learns to recognise the simple training rain and subtract it, instead of
learning what a clean image looks like -- so it fails on rain it has not seen.
With few or simple backgrounds it has to model the background and generalises.

This module supplies backgrounds from four kinds of source, all behind one
:class:`Source` interface and :func:`get_source`:

* **Procedural** (:mod:`derain_utils.synth.procedural`): a complexity ladder of generated images
  (``flat`` to ``texture``, :data:`~derain_utils.synth.procedural.LADDER`) and the dead-leaves model
  (``"deadleaves"``), the embedded default that stands in for natural photographs
  (:class:`ProceduralSource`).

* **Embedded photographs**: the sample images scikit-image ships inside its wheel
  (:func:`skimage_samples`, source name ``"skimage"``). They load offline and stand
  in for natural photos when no real data folder is configured.

* **Real image sets** from a folder: the categories in :data:`CATEGORIES`
  (``faces``, ``natural``, ``urban``, ``manga``) are sub-folders of ``$DERAIN_DATA``
  (or ``data_dir``; see :func:`derain_utils.synth.data.data_root`), and any folder path works
  as a source too (:class:`ImageFolder`).

**Splitting without leakage** (:func:`draw_split`). Whether an image is a *test*
image depends only on a stable hash of its id (file stem), never on the seed or on
how many training images are drawn: test images are disjoint from every training
draw. Training samples are distinct, non-overlapping grid tiles of the training
images, taken in a seeded order that is *nested*: the first N tiles of a larger
draw are exactly the smaller draw, so "more backgrounds" only ever adds images.

**Mixed sets** (:func:`mix_name`). A training set that mixes a simple and a complex source in a
given proportion, ``"faces+urban@0.25"``: of N tiles, ``round(0.25 N)`` are the first tiles of
the complex source's seeded draw and the rest the first tiles of the simple source's, so the mixed
set of a seed is a subset of the two pure draws of that seed (notebook 02's dose-response).
"""
from __future__ import annotations

import abc
import functools
import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch

from derain_utils.synth.data import data_root
from derain_utils.synth.procedural import LADDER, PROCEDURAL_KINDS, _as_hw, _check_int, _procedural_stream, procedural

__all__ = [
    "reads_files",
    "fingerprint",
    "CATEGORIES",
    "IMAGE_EXTENSIONS",
    "TEST_FRACTION",
    "PROCEDURAL_TEST_SEED",
    "SKIMAGE_PHOTOS",
    "SKIMAGE_EXCLUDED",
    "skimage_samples",
    "to_float_rgb",
    "to_gray",
    "MAX_PIXELS",
    "load_image",
    "image_size",
    "Source",
    "ImageFolder",
    "SkimageSource",
    "ProceduralSource",
    "get_source",
    "available_categories",
    "is_test_image",
    "split_ids",
    "BackgroundSplit",
    "draw_split",
    "mix_name",
    "parse_mix",
    "mix_counts",
    "random_crops",
]

CATEGORIES: dict[str, str] = {
    "faces": "bg_faces_celebahq",
    "natural": "bg_natural",
    "urban": "bg_urban100",
    "manga": "bg_manga109",
}
"""Real background categories -> their folder names under ``$DERAIN_DATA``."""

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""File suffixes an :class:`ImageFolder` lists (case-insensitive)."""

TEST_FRACTION: float = 0.25
"""Expected share of a source's images that are test images (per-image hash threshold)."""

PROCEDURAL_TEST_SEED: int = 10**9
"""Entropy of the procedural *test* stream; it also uses spawn key 1 (training uses 0), so the
two streams are disjoint whatever the training seed."""

MAX_PIXELS: int = 2**25
"""Largest image, in pixels (H x W), that :func:`load_image` decodes: 33,554,432 px (8192 x 4096; an
8K UHD frame of 7680 x 4320 fits). A larger file is refused, naming it, before any pixel is decoded:
its float32 RGB copy alone would take more than 400 MB, the complexity meter needs about 57 bytes per
pixel (measured on a 4096 x 4096 image: 1.9 GB at this limit), and a small compressed file can declare
a huge size (a "decompression bomb"). Downscale such images first, or pass ``max_pixels`` to
:func:`load_image`."""

_SPLIT_SALT = "derain-split-v1:"

SKIMAGE_PHOTOS: dict[str, tuple[str, str]] = {
    # name: (file bundled in skimage/data, what it shows)
    "astronaut": ("astronaut.png", "colour portrait of astronaut Eileen Collins"),
    "brick": ("brick.png", "gray close-up of a brick wall (texture)"),
    "camera": ("camera.png", "gray 'cameraman' photograph"),
    "chelsea": ("chelsea.png", "colour photo of Chelsea the cat"),
    "clock": ("clock_motion.png", "gray photo of a wall clock, motion blurred"),
    "coffee": ("coffee.png", "colour photo of a cup of coffee"),
    "coins": ("coins.png", "gray photo of Greek coins"),
    "grass": ("grass.png", "gray photo of grass (texture)"),
    "gravel": ("gravel.png", "gray photo of gravel (texture)"),
    "moon": ("moon.png", "gray photo of the lunar surface"),
    "rocket": ("rocket.jpg", "colour photo of a rocket on its launch pad"),
    "stereo_motorcycle": ("motorcycle_left.png", "colour photo of a motorcycle (left view only)"),
}
"""The scikit-image samples used as embedded photographs: name -> (bundled file, content).
A sample is used only if its file ships in the installed scikit-image (checked before
loading, so nothing is ever downloaded). Gray photos are replicated to RGB."""

SKIMAGE_EXCLUDED: dict[str, str] = {
    "cat": "the same image as chelsea",
    "binary_blobs": "synthetic binary pattern",
    "checkerboard": "synthetic pattern",
    "colorwheel": "synthetic colour wheel",
    "horse": "binary silhouette",
    "logo": "graphic (the scikit-image logo) with transparency",
    "shepp_logan_phantom": "synthetic phantom",
    "page": "scanned page of text: document, not a scene",
    "text": "photo of text: near-binary document content",
    "cell": "microscopy",
    "immunohistochemistry": "stained microscopy slide",
    "microaneurysms": "medical (retina detail), 102x102 px",
    "retina": "medical fundus photo, large black border",
    "hubble_deep_field": "astronomy: mostly black sky",
    "lfw_subset": "200 gray 25x25 face crops: too small to tile",
    "stereo_motorcycle (right view)": "near-duplicate of the left view",
    "brain, cells3d, eagle, human_mitosis, kidney, lily, nickel_solidification, palisades_of_vogt, "
    "protein_transport, skin, vortex": "not shipped in the wheel: needs a download",
}
"""scikit-image samples deliberately not used, with the reason."""


# =========================================================================== procedural
# =========================================================================== images
def _check_float_range(x: np.ndarray) -> np.ndarray:
    """The one rule for float images (arrays and float files alike): every value finite and in [0, 1].

    Values within 1e-6 of the range (float rounding) are clipped into it. Anything else -- NaN or
    infinite values, or another scale such as 0..255 or 0..1000 -- is refused with the range found:
    clipping would turn a 0..1000 image white and NaN black, silently. Rescale it first
    (e.g. ``x / x.max()``) or store it as 8- or 16-bit.
    """
    if not x.size:
        return x
    finite = np.isfinite(x)
    if not finite.all():
        bad = int((~finite).sum())
        what = "all of its" if bad == x.size else f"{bad} of its {x.size}"
        raise ValueError(f"float image has NaN or infinite values in {what} values; expected floats in [0, 1]")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"float image has values in [{lo:.6g}, {hi:.6g}], outside [0, 1]; rescale it to [0, 1] "
                         "(e.g. divide by its maximum) or store it as an 8- or 16-bit image")
    return np.clip(x, 0.0, 1.0)


def to_float_rgb(arr: np.ndarray) -> np.ndarray:
    """Convert a numpy image to float32 RGB (H, W, 3) in [0, 1].

    Accepts bool, uint8 (/255), uint16 (/65535) or float in [0, 1] (finite; anything else raises
    ValueError, see :func:`_check_float_range`: never clipped silently); shapes (H, W) and
    (H, W, 1) (gray, replicated), (H, W, 2) (gray + alpha), (H, W, 3) and (H, W, 4)
    (RGBA). Alpha is **composited over white**: ``rgb * a + (1 - a)``, so fully
    transparent pixels become white rather than whatever colour they happen to store.
    """
    a = np.asarray(arr)
    if a.dtype == bool:
        x = a.astype(np.float32)
    elif a.dtype in (np.uint8, np.uint16):
        x = a.astype(np.float32) / np.iinfo(a.dtype).max
    elif np.issubdtype(a.dtype, np.floating):
        x = _check_float_range(a.astype(np.float32))
    else:
        raise ValueError(f"image dtype {a.dtype} is not supported (use bool, uint8, uint16 or float in [0, 1])")
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"image shape {a.shape} is not (H, W) or (H, W, C) with C in 1..4")
    if x.shape[-1] in (2, 4):
        alpha = x[..., -1:]
        x = x[..., :-1] * alpha + (1.0 - alpha)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x, dtype=np.float32)


def to_gray(images: np.ndarray) -> np.ndarray:
    """BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of RGB images (..., 3) -> (..., 1), float32.

    This is plain luma on [0, 1] values (for training gray models), not the offset
    MATLAB ``rgb2ycbcr`` Y used for PSNR tables (see ``derain_utils.measure.metrics.rgb_to_y``).
    """
    images = np.asarray(images)
    if images.shape[-1:] != (3,):
        raise ValueError(f"images must have 3 channels last, got shape {images.shape}")
    w = np.array([0.299, 0.587, 0.114], np.float32)
    return np.ascontiguousarray((images.astype(np.float32) @ w)[..., None])


def _pil_to_float_rgb(im) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return to_float_rgb(np.asarray(im).astype(np.uint16))
    if mode == "I":  # 32-bit int: Pillow's mode for some 16-bit files; read as 16-bit
        a = np.asarray(im)
        if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
            raise ValueError(f"32-bit integer image has values in [{int(a.min())}, {int(a.max())}], outside the "
                             "16-bit range [0, 65535]; store it as an 8- or 16-bit image")
        return to_float_rgb(a.astype(np.uint16))
    if mode == "F":  # 32-bit float (TIFF): the same rule as float arrays, no clipping
        return to_float_rgb(np.asarray(im, np.float32))
    if mode == "1":
        return to_float_rgb(np.asarray(im.convert("L")))
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...
    return to_float_rgb(np.asarray(im))


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"image file {str(p)!r} does not exist")
    if p.is_dir():
        raise ValueError(f"image path {str(p)!r} is a folder, not an image file")
    return p


def _too_large(p: Path, im, limit: int) -> str | None:
    """Why an opened (not yet decoded) image is refused: more than ``limit`` pixels; None when it is not."""
    w, h = im.size
    if w * h <= limit:
        return None
    return (f"image file {str(p)!r} is {w}x{h} px ({w * h / 1e6:.1f} Mpx), more than the {limit / 1e6:.1f} Mpx "
            "that are decoded (backgrounds.MAX_PIXELS, or max_pixels); downscale it first")


def _bomb_message(p: Path, err: Exception) -> str:
    return (f"image file {str(p)!r} declares more pixels than Pillow will decode (a possible decompression "
            f"bomb; backgrounds.MAX_PIXELS is {MAX_PIXELS / 1e6:.1f} Mpx): {err}")


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file (PNG, JPEG, TIFF, BMP, ... via Pillow) as float32 RGB (H, W, 3) in [0, 1].

    Conversions: gray (``L``, ``1``) is replicated to RGB; 16-bit gray (``I;16``) is
    divided by 65535; palette images are expanded; alpha (``LA``, ``RGBA``, palette
    transparency) is composited over white; CMYK/YCbCr/LAB are converted by Pillow.
    The EXIF orientation tag is applied, as an image viewer would. Multi-frame
    files give their first frame. Pillow reads 16-bit *colour* PNGs at 8-bit
    precision (a Pillow limitation; <0.4% of the range, irrelevant for backgrounds).

    Float files (TIFF mode ``F``) follow the rule for float arrays (:func:`to_float_rgb`): values
    must be finite and in [0, 1]; they are never clipped. Files larger than ``max_pixels``
    (default :data:`MAX_PIXELS`) are refused from their header, before decoding.

    Raises:
        FileNotFoundError: the file does not exist (names it).
        ValueError: the file is a folder, is not a readable image, is too large, or holds float
            values outside [0, 1] (names it).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    limit = MAX_PIXELS if max_pixels is None else _check_int(max_pixels, "max_pixels", 1)
    p = _check_file(path)
    try:
        with Image.open(p) as im:
            refused = _too_large(p, im, limit)
            if refused is None:
                im.load()
                im = ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as err:
        raise ValueError(_bomb_message(p, err)) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image file {str(p)!r}: {err}") from err
    if refused is not None:
        raise ValueError(refused)
    try:
        return _pil_to_float_rgb(im)
    except ValueError as err:
        raise ValueError(f"image file {str(p)!r}: {err}") from err


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file from its header (no decoding), after EXIF orientation."""
    from PIL import Image, UnidentifiedImageError

    p = _check_file(path)
    try:
        with Image.open(p) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                w, h = h, w
    except Image.DecompressionBombError as err:
        raise ValueError(_bomb_message(p, err)) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image file {str(p)!r}: {err}") from err
    return int(h), int(w)


# The non-photographic samples that ship in the wheel (used only with photographic_only=False);
# None = generated by code, no file needed.
_SKIMAGE_OTHER_FILES: dict[str, str | None] = {
    "binary_blobs": None, "checkerboard": None, "colorwheel": None, "horse": "horse.png", "logo": "logo.png",
    "shepp_logan_phantom": "phantom.png", "page": "page.png", "text": "text.png", "cell": "cell.png",
    "immunohistochemistry": "ihc.png", "microaneurysms": "microaneurysms.png", "retina": "retina.jpg",
    "hubble_deep_field": "hubble_deep_field.jpg",
}


@functools.lru_cache(maxsize=2)
def _skimage_cache(photographic_only: bool) -> tuple[tuple[str, np.ndarray], ...]:
    import skimage.data

    bundled = Path(skimage.data.__file__).parent
    files: dict[str, str | None] = {k: v[0] for k, v in SKIMAGE_PHOTOS.items()}
    if not photographic_only:
        files.update(_SKIMAGE_OTHER_FILES)
    out = []
    for name, fname in files.items():
        if fname is not None and not (bundled / fname).is_file():
            continue  # not in the wheel: it would need a download, so skip it and never touch the network
        try:
            img = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - any failure (download needed, missing codec) means "not offline"
            continue
        if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
            img = img[0]
        arr = to_float_rgb(img)
        arr.flags.writeable = False  # shared by the cache
        out.append((name, arr))
    return tuple(out)


def skimage_samples(photographic_only: bool = True) -> list[tuple[str, np.ndarray]]:
    """The sample images scikit-image ships in its wheel, as (name, float32 RGB (H, W, 3)) pairs.

    By default only the photographs in :data:`SKIMAGE_PHOTOS` (scenes, objects, texture
    photos); :data:`SKIMAGE_EXCLUDED` lists what is left out and why. Samples that would
    need a download are skipped before anything is fetched, so this works offline and
    gives the same list on every machine with the same scikit-image. Loaded once per
    process (cached); the arrays are read-only -- copy before modifying.
    """
    return list(_skimage_cache(bool(photographic_only)))


# =========================================================================== sources
class Source(abc.ABC):
    """A named collection of background images.

    ``ids()`` lists image ids (``None`` for procedural, unbounded sources);
    ``load(id)`` returns float32 RGB (H, W, 3) in [0, 1]; ``size(id)`` returns (H, W),
    cheaply where possible.
    """

    name: str

    @abc.abstractmethod
    def ids(self) -> list[str] | None: ...

    @abc.abstractmethod
    def load(self, id: str) -> np.ndarray: ...

    def size(self, id: str) -> tuple[int, int]:
        h, w = self.load(id).shape[:2]
        return int(h), int(w)

    def __repr__(self) -> str:
        ids = self.ids()
        return f"{type(self).__name__}(name={self.name!r}, images={'unbounded' if ids is None else len(ids)})"


def _safe_name(name: str) -> str:
    """A file name as valid UTF-8 text: bytes that are not UTF-8 (which Python keeps as lone
    surrogates, ``'caf\\udce9.png'``) become backslash escapes (``'caf\\\\xe9.png'``), so ids can be
    hashed and written to CSV and JSON. Valid names are returned unchanged."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class ImageFolder(Source):
    """The images directly inside a folder (not recursive), sorted by file name.

    Files with a suffix in :data:`IMAGE_EXTENSIONS` (any case) are listed; other files
    (``PROVENANCE.md``, hidden files) are ignored. Ids are the file names (a name that is not
    valid UTF-8 gets its odd bytes as backslash escapes, e.g. ``caf\\xe9.png``).

    Args:
        root: the folder.
        min_size: if given, every image must be at least ``min_size`` px on both sides
            (checked from the file headers at construction).
        on_small: ``"error"`` raises ValueError naming the first small file and its size;
            ``"skip"`` drops small files with a warning.
        name: source name (default: the folder's name).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        min_size: int | None = None,
        on_small: Literal["error", "skip"] = "error",
        name: str | None = None,
    ):
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise FileNotFoundError(f"image folder {str(self.root)!r} does not exist")
        if not self.root.is_dir():
            raise ValueError(f"image folder {str(self.root)!r} is not a folder")
        if on_small not in ("error", "skip"):
            raise ValueError(f"on_small must be 'error' or 'skip', got {on_small!r}")
        if min_size is not None:
            _check_int(min_size, "min_size", 1)
        paths = sorted(
            (p for p in self.root.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS),
            key=lambda p: p.name,
        )
        if not paths:
            raise ValueError(f"image folder {str(self.root)!r} holds no images with suffix in {list(IMAGE_EXTENSIONS)}")
        self._sizes: dict[str, tuple[int, int]] = {}
        if min_size is not None:
            kept = []
            for p in paths:
                h, w = self._sizes[p.name] = image_size(p)
                if min(h, w) >= min_size:
                    kept.append(p)
                elif on_small == "error":
                    raise ValueError(f"image {str(p)!r} is {h}x{w} (HxW), smaller than min_size={min_size}")
                else:
                    warnings.warn(f"skipping image {str(p)!r}: {h}x{w} (HxW) is smaller than min_size={min_size}",
                                  stacklevel=2)
            if not kept:
                raise ValueError(f"image folder {str(self.root)!r}: no image is at least min_size={min_size} px")
            paths = kept
        self.paths: list[Path] = paths
        self.names: list[str] = [_safe_name(p.name) for p in paths]
        self._by_name = dict(zip(self.names, self.paths))
        if len(self._by_name) != len(self.paths):  # a literal backslash name beside its undecodable twin
            raise ValueError(f"image folder {str(self.root)!r}: two file names give the same id {self.names}")
        self.name = name if name is not None else self.root.name

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return load_image(self.paths[i])

    def _path(self, id: str) -> Path:
        try:
            return self._by_name[id]
        except KeyError:
            raise ValueError(f"id={id!r} is not an image in folder {str(self.root)!r}") from None

    def ids(self) -> list[str]:
        return list(self.names)

    def load(self, id: str) -> np.ndarray:
        return load_image(self._path(id))

    def size(self, id: str) -> tuple[int, int]:
        if id not in self._sizes:
            self._sizes[id] = image_size(self._path(id))
        return self._sizes[id]


class SkimageSource(Source):
    """The embedded scikit-image photographs (:func:`skimage_samples`); ids are sample names."""

    name = "skimage"

    def __init__(self) -> None:
        self._images = dict(skimage_samples())

    def ids(self) -> list[str]:
        return sorted(self._images)

    def load(self, id: str) -> np.ndarray:
        if id not in self._images:
            raise ValueError(f"id={id!r} is not an embedded scikit-image photo; valid: {self.ids()}")
        return self._images[id].copy()

    def size(self, id: str) -> tuple[int, int]:
        h, w = self._images[id].shape[:2] if id in self._images else self.load(id).shape[:2]
        return int(h), int(w)


class ProceduralSource(Source):
    """Procedural backgrounds of one :data:`PROCEDURAL_KINDS` kind (unbounded: ``ids()`` is None).

    Ids name the seed stream: ``"<kind>:s<seed>:<i>"`` is training image ``i`` of
    ``seed`` (``procedural(kind, size, seed, i + 1)[i]``); ``"<kind>:test:<j>"`` is test
    image ``j`` (the seed-independent test stream). ``load`` renders at ``self.size``.
    """

    _ID = re.compile(r"^(?P<kind>\w+):(?:s(?P<seed>\d+)|(?P<test>test)):(?P<i>\d+)$")

    def __init__(self, kind: str, size: int | tuple[int, int] = 256):
        if kind not in PROCEDURAL_KINDS:
            raise ValueError(f"kind={kind!r} is not a procedural kind; valid: {list(PROCEDURAL_KINDS)}")
        self.name = kind
        self.kind = kind
        self.shape = _as_hw(size)

    def ids(self) -> None:
        return None

    def train_images(self, n: int, size: int | tuple[int, int], seed: int) -> tuple[np.ndarray, list[str]]:
        return procedural(self.kind, size, seed, n), [f"{self.kind}:s{seed}:{i}" for i in range(n)]

    def test_images(self, n: int, size: int | tuple[int, int]) -> tuple[np.ndarray, list[str]]:
        imgs = _procedural_stream(self.kind, size, PROCEDURAL_TEST_SEED, 0, n, stream=1)
        return imgs, [f"{self.kind}:test:{j}" for j in range(n)]

    def load(self, id: str) -> np.ndarray:
        m = self._ID.match(id)
        if m is None or m["kind"] != self.kind:
            raise ValueError(
                f"id={id!r} is not a {self.kind!r} id ('{self.kind}:s<seed>:<i>' or '{self.kind}:test:<j>')"
            )
        seed, stream = (PROCEDURAL_TEST_SEED, 1) if m["test"] else (int(m["seed"]), 0)
        return _procedural_stream(self.kind, self.shape, seed, int(m["i"]), 1, stream)[0]

    def size(self, id: str) -> tuple[int, int]:
        return self.shape


def _category_hint() -> str:
    return (f"pass data_dir=... or set the environment variable DERAIN_DATA to the folder that holds "
            f"{sorted(CATEGORIES.values())} (in development: export DERAIN_DATA=../shared/data); offline "
            f"alternatives: 'deadleaves', 'skimage' or a procedural kind {list(LADDER)}")


def get_source(name: str | os.PathLike | Source, data_dir: str | os.PathLike | None = None) -> Source:
    """Resolve a background source by name.

    * ``"faces"``, ``"natural"``, ``"urban"``, ``"manga"`` (or their folder names in
      :data:`CATEGORIES`) -> :class:`ImageFolder` of ``<data_dir or $DERAIN_DATA>/<folder>``;
    * ``"skimage"`` -> the embedded photographs;
    * a :data:`PROCEDURAL_KINDS` name (the ladder, or ``"deadleaves"``) -> :class:`ProceduralSource`;
    * an existing folder path -> :class:`ImageFolder`;
    * a :class:`Source` is returned unchanged.

    Raises:
        ValueError: unknown name (lists the valid ones), or a category with no data
            root configured (says how to set one).
        FileNotFoundError: the configured data root, or the category's folder in it, is missing.
    """
    if isinstance(name, Source):
        return name
    if not isinstance(name, (str, os.PathLike)):
        raise ValueError(f"source must be a name, a folder path or a Source, got {type(name).__name__}")
    key = os.fspath(name)
    by_folder = {v: k for k, v in CATEGORIES.items()}
    if key in CATEGORIES or key in by_folder:
        category = key if key in CATEGORIES else by_folder[key]
        root = data_root(data_dir)
        if root is None:
            raise ValueError(f"source {category!r} needs the real image sets: {_category_hint()}")
        folder = root / CATEGORIES[category]
        if not folder.is_dir():
            raise FileNotFoundError(
                f"source {category!r}: folder {str(folder)!r} not found in the data root {str(root)!r} "
                f"(from data_dir / DERAIN_DATA); categories present there: {available_categories(root)}"
            )
        return ImageFolder(folder, name=category)
    if parse_mix(key) is not None:
        raise ValueError(f"source {key!r} is a mixed training set (backgrounds.mix_name), not one source: draw it "
                         f"with backgrounds.draw_split, or name one of its two sources")
    if key == "skimage":
        return SkimageSource()
    if key in PROCEDURAL_KINDS:
        return ProceduralSource(key)
    if Path(key).expanduser().is_dir():
        return ImageFolder(key)
    raise ValueError(
        f"source={key!r} is not a category {list(CATEGORIES)}, 'skimage', a procedural kind "
        f"{list(PROCEDURAL_KINDS)}, "
        f"or an existing folder"
    )


def available_categories(data_dir: str | os.PathLike | None = None) -> list[str]:
    """The categories whose folder exists under the data root and holds at least one image ([] if none is set)."""
    root = data_root(data_dir)
    if root is None:
        return []
    out = []
    for category, folder in CATEGORIES.items():
        d = root / folder
        if d.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in d.iterdir() if p.is_file()):
            out.append(category)
    return out


# =========================================================================== split
def _unit_hash(key: str) -> float:
    """Stable hash of a string to [0, 1) (sha1; identical on every machine and Python)."""
    # surrogateescape: a key holding undecodable file-name bytes hashes those bytes (valid text is unchanged)
    return int.from_bytes(hashlib.sha1(key.encode("utf-8", "surrogateescape")).digest()[:8], "big") / 2.0**64


def is_test_image(image_id: str) -> bool:
    """Whether an image id falls in the fixed test split: ``sha1(salt + stem) < TEST_FRACTION``.

    Only the file *stem* counts, so ``foo.jpg`` (a downscaled copy) and ``foo.png`` (the
    fetched original) land on the same side, and adding images never moves existing ones.
    """
    return _unit_hash(_SPLIT_SALT + Path(image_id).stem) < TEST_FRACTION


def split_ids(ids: Sequence[str], source: str | None = None) -> tuple[list[str], list[str]]:
    """Fixed (train, test) image ids, each sorted; independent of any seed.

    Per image by :func:`is_test_image`. At least one image goes to each side: if the
    hash puts none in test, the id with the smallest hash moves to test (and
    symmetrically for train), which needs at least 2 images.
    """
    ids = sorted(set(ids))
    if len(ids) < 2:
        where = f" in source {source!r}" if source else ""
        raise ValueError(f"a train/test split needs at least 2 images, got {len(ids)}{where}")
    test = [i for i in ids if is_test_image(i)]
    train = [i for i in ids if not is_test_image(i)]
    key = lambda i: _unit_hash(_SPLIT_SALT + Path(i).stem)  # noqa: E731
    if not test:
        test = [min(train, key=key)]
        train.remove(test[0])
    elif not train:
        train = [max(test, key=key)]
        test.remove(train[0])
    return train, test


def _grid(h: int, w: int, size: int) -> list[tuple[int, int]]:
    """Top-left corners of the non-overlapping size x size grid, centred in an h x w image."""
    rows, cols = h // size, w // size
    oy, ox = (h - rows * size) // 2, (w - cols * size) // 2
    return [(oy + r * size, ox + c * size) for r in range(rows) for c in range(cols)]


def _test_crops(h: int, w: int, size: int) -> list[tuple[int, int]]:
    """Centre crop first, then the grid crops that do not overlap it (raster order)."""
    if h < size or w < size:
        return []
    cy, cx = (h - size) // 2, (w - size) // 2
    rest = [(y, x) for y, x in _grid(h, w, size) if abs(y - cy) >= size or abs(x - cx) >= size]
    return [(cy, cx)] + rest


@dataclass(eq=False, repr=False)
class BackgroundSplit:
    """Training tiles and test crops drawn from one source (see :func:`draw_split`).

    Attributes:
        train: float32 (N, tile, tile, C) in [0, 1], C = 3 (RGB) or 1 (gray).
        test: float32 (n_test, test_size, test_size, C).
        train_ids, test_ids: one id per sample, ``"<image id>@<y>,<x>"`` (top-left corner
            of the tile/crop) for image sources, the procedural id otherwise.
        source: the source's name; tile, test_size, seed: as drawn.
    """

    train: np.ndarray
    test: np.ndarray
    train_ids: list[str]
    test_ids: list[str]
    source: str
    tile: int
    test_size: int
    seed: int

    @staticmethod
    def _tensor(arr: np.ndarray, device: str | torch.device | None) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).to(device)

    def train_tensor(self, device: str | torch.device | None = None) -> torch.Tensor:
        """Training tiles as torch float32 (N, C, tile, tile)."""
        return self._tensor(self.train, device)

    def test_tensor(self, device: str | torch.device | None = None) -> torch.Tensor:
        """Test crops as torch float32 (n_test, C, test_size, test_size)."""
        return self._tensor(self.test, device)

    @property
    def channels(self) -> int:
        return int(self.train.shape[-1])

    @property
    def train_images(self) -> list[str]:
        """The distinct source images the training tiles come from."""
        return sorted({i.rsplit("@", 1)[0] for i in self.train_ids})

    @property
    def test_images(self) -> list[str]:
        """The distinct source images the test crops come from."""
        return sorted({i.rsplit("@", 1)[0] for i in self.test_ids})

    def __repr__(self) -> str:
        return (f"BackgroundSplit(source={self.source!r}, train={tuple(self.train.shape)}, "
                f"test={tuple(self.test.shape)}, tile={self.tile}, test_size={self.test_size}, seed={self.seed})")


def draw_split(
    source: str | os.PathLike | Source,
    n_train: int,
    n_test: int,
    *,
    tile: int = 64,
    test_size: int = 64,
    seed: int = 0,
    gray: bool = False,
    data_dir: str | os.PathLike | None = None,
) -> BackgroundSplit:
    """Draw ``n_train`` training tiles and ``n_test`` test crops from a background source.

    Image sources (folders, categories, ``"skimage"``):

    1. The image-level split is fixed by :func:`split_ids` (a stable hash of each image's
       id, about :data:`TEST_FRACTION` test), independent of ``seed`` and ``n_train``:
       test images never appear in any training draw.
    2. Training: the distinct, non-overlapping ``tile`` x ``tile`` grid tiles of the
       training images (grid centred in each image; images smaller than ``tile`` give
       none), ordered by a seeded hash of each tile's id. The first ``n_train`` are
       taken, so draws are **nested**: same seed, larger ``n_train`` = smaller draw plus more.
    3. Test: ``test_size`` crops of the test images, deterministic and seed-independent:
       every test image's centre crop (in id order), then, if more are needed, further
       grid crops that do not overlap the centre crop, one per image per round.

    Procedural sources (a :data:`PROCEDURAL_KINDS` name): training image ``i`` is
    ``procedural(kind, tile, seed, n_train)[i]``, one whole image per tile; test images
    come from a separate stream (:data:`PROCEDURAL_TEST_SEED`, spawn key 1), the same for
    every seed.

    Mixed sets (a :func:`mix_name` name): the two sources' draws of the same seed, cut to
    :func:`mix_counts` (training tiles and test crops alike) and interleaved evenly in draw order
    (the k-th of a source's n samples at (k + 1/2) / n), so any prefix holds both in about the
    mixed proportion; ids are prefixed with the source's name (``"faces/<id>"``).

    Args:
        source: a name or folder for :func:`get_source`, a :func:`mix_name`, or a :class:`Source`.
        n_train, n_test: numbers of training tiles and test crops (>= 0).
        tile, test_size: sides in px of training tiles and test crops.
        seed: orders the training tiles (non-negative int).
        gray: return BT.601 luma, (..., 1) channels, instead of RGB.
        data_dir: data root for category names (default ``$DERAIN_DATA``).

    Raises:
        ValueError: bad arguments, or too few tiles / test crops (gives the available
            count and suggests a smaller tile or n).
    """
    n_train = _check_int(n_train, "n_train", 0)
    n_test = _check_int(n_test, "n_test", 0)
    tile = _check_int(tile, "tile", 1)
    test_size = _check_int(test_size, "test_size", 1)
    seed = _check_int(seed, "seed", 0)
    mix = parse_mix(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else None
    if mix is not None:
        return _draw_mix(mix, os.fspath(source), n_train, n_test, tile=tile, test_size=test_size, seed=seed,
                         gray=gray, data_dir=data_dir)
    src = get_source(source, data_dir)

    if isinstance(src, ProceduralSource):
        train, train_ids = src.train_images(n_train, tile, seed)
        test, test_ids = src.test_images(n_test, test_size)
    else:
        ids = src.ids()
        if ids is None:
            raise ValueError(f"source {src.name!r} lists no image ids; draw_split needs an image source")
        train_imgs, test_imgs = split_ids(ids, source=getattr(src, 'root', None) and str(src.root) or src.name)
        tiles = [(i, y, x) for i in train_imgs for y, x in _grid(*src.size(i), tile)]
        if n_train > len(tiles):
            raise ValueError(
                f"n_train={n_train} but source {src.name!r} has only {len(tiles)} distinct {tile}x{tile} tiles "
                f"in its {len(train_imgs)} training images; use a smaller tile or n_train"
            )
        tile_id = [f"{i}@{y},{x}" for i, y, x in tiles]
        order = sorted(range(len(tiles)), key=lambda k: _unit_hash(f"tiles:{seed}:{tile_id[k]}"))[:n_train]

        per_image = [[(i, y, x) for y, x in _test_crops(*src.size(i), test_size)] for i in test_imgs]
        rounds = max((len(c) for c in per_image), default=0)
        crops = [c[r] for r in range(rounds) for c in per_image if r < len(c)]
        if n_test > len(crops):
            raise ValueError(
                f"n_test={n_test} but source {src.name!r} has only {len(crops)} non-overlapping "
                f"{test_size}x{test_size} test crops in its {len(test_imgs)} test images; "
                f"use a smaller test_size or n_test"
            )
        crops = crops[:n_test]

        cache: dict[str, np.ndarray] = {}

        def cut(i: str, y: int, x: int, s: int) -> np.ndarray:
            if i not in cache:
                cache[i] = src.load(i)
            return cache[i][y : y + s, x : x + s]

        chosen = [tiles[k] for k in order]
        train = np.stack([cut(i, y, x, tile) for i, y, x in chosen]) if chosen else np.zeros((0, tile, tile, 3))
        train_ids = [tile_id[k] for k in order]
        cache.clear()
        test = np.stack([cut(i, y, x, test_size) for i, y, x in crops]) if crops else np.zeros(
            (0, test_size, test_size, 3))
        test_ids = [f"{i}@{y},{x}" for i, y, x in crops]

    train = np.ascontiguousarray(train, np.float32)
    test = np.ascontiguousarray(test, np.float32)
    if gray:
        train, test = to_gray(train), to_gray(test)
    return BackgroundSplit(train=train, test=test, train_ids=train_ids, test_ids=test_ids, source=src.name,
                           tile=tile, test_size=test_size, seed=seed)


# =========================================================================== mixed sets
_MIX = re.compile(r"^(?P<a>[^+@]+)\+(?P<b>[^+@]+)@(?P<p>0\.\d+)$")


def mix_name(simple: str, complex_: str, proportion: float) -> str:
    """The source name of a training set mixing ``simple`` and ``complex_``: ``"<simple>+<complex>@<p>"``.

    ``proportion`` is the share of ``complex_`` tiles, strictly between 0 and 1 (the ends are
    the pure sources themselves, so each training set has one name). Printed with at most 6
    decimals (``0.25``, ``0.5``).
    """
    for name, v in (("simple", simple), ("complex_", complex_)):
        if not isinstance(v, str) or not v or "+" in v or "@" in v:
            raise ValueError(f"{name} must be a source name without '+' or '@', got {v!r}")
    if simple == complex_:
        raise ValueError(f"a mix needs two different sources, got {simple!r} twice")
    try:
        p = float(proportion)
    except (TypeError, ValueError):
        raise ValueError(f"proportion must be a number strictly between 0 and 1, got {proportion!r}") from None
    text = f"{p:.6f}".rstrip("0") if np.isfinite(p) else ""
    if not 0.0 < p < 1.0 or not 0.0 < float(text + "0") < 1.0:
        raise ValueError(f"proportion must be strictly between 0 and 1 with at most 6 decimals (the ends are the "
                         f"pure sources {simple!r} and {complex_!r}), got {proportion!r}")
    return f"{simple}+{complex_}@{text}"


def parse_mix(name: object) -> tuple[str, str, float] | None:
    """``(simple, complex, proportion)`` of a :func:`mix_name` name, None for any other source name."""
    m = _MIX.match(name) if isinstance(name, str) else None
    if m is None:
        return None
    p = float(m["p"])
    if not 0.0 < p < 1.0 or m["a"] == m["b"]:
        return None
    return m["a"], m["b"], p


def mix_counts(n: int, proportion: float) -> tuple[int, int]:
    """``(n_simple, n_complex)`` of ``n`` samples at ``proportion`` complex: ``n_complex = floor(p n + 1/2)``."""
    n_complex = int(np.floor(proportion * n + 0.5))
    return n - n_complex, n_complex


def _draw_mix(mix: tuple[str, str, float], name: str, n_train: int, n_test: int, *, tile: int, test_size: int,
              seed: int, gray: bool, data_dir: str | os.PathLike | None) -> BackgroundSplit:
    simple, complex_, p = mix
    (a_train, b_train), (a_test, b_test) = mix_counts(n_train, p), mix_counts(n_test, p)
    parts = [draw_split(src, n, m, tile=tile, test_size=test_size, seed=seed, gray=gray, data_dir=data_dir)
             for src, n, m in ((simple, a_train, a_test), (complex_, b_train, b_test))]

    def merge(arrays: list[np.ndarray], ids: list[list[str]]) -> tuple[np.ndarray, list[str]]:
        # interleaved evenly: the k-th of n samples of a source sits at (k + 1/2) / n, ties to the simple one
        keys = sorted(((k + 0.5) / len(a), j, k) for j, a in enumerate(arrays) for k in range(len(a)))
        out = [arrays[j][k] for _, j, k in keys]
        return (np.stack(out) if out else np.concatenate(arrays),
                [f"{parts[j].source}/{ids[j][k]}" for _, j, k in keys])

    train, train_ids = merge([s.train for s in parts], [s.train_ids for s in parts])
    test, test_ids = merge([s.test for s in parts], [s.test_ids for s in parts])
    return BackgroundSplit(train=train, test=test, train_ids=train_ids, test_ids=test_ids, source=name, tile=tile,
                           test_size=test_size, seed=seed)


# =========================================================================== crops
def random_crops(images: torch.Tensor, batch: int, patch: int, generator: torch.Generator) -> torch.Tensor:
    """Random ``patch`` x ``patch`` crops with random horizontal/vertical flips, batched.

    Each crop picks an image uniformly, a uniform top-left offset, and flips each axis
    with probability 1/2. One advanced-indexing gather, no Python loop over the batch.
    Random numbers are drawn on the generator's device (then moved), so the result
    depends only on the generator state.

    Args:
        images: float tensor (N, C, H, W).
        batch: number of crops (>= 1).
        patch: crop side in px, <= H and <= W.
        generator: torch.Generator (its state advances).

    Returns:
        (batch, C, patch, patch) tensor on ``images.device``, same dtype.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a torch tensor (N, C, H, W), got "
                         f"{tuple(images.shape) if hasattr(images, 'shape') else type(images).__name__}")
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("images is empty (N = 0)")
    batch = _check_int(batch, "batch", 1)
    patch = _check_int(patch, "patch", 1)
    if patch > h or patch > w:
        raise ValueError(f"patch={patch} is larger than the images ({h}x{w}, HxW)")
    gdev = generator.device
    idx = torch.randint(n, (batch,), generator=generator, device=gdev)
    y0 = torch.randint(h - patch + 1, (batch,), generator=generator, device=gdev)
    x0 = torch.randint(w - patch + 1, (batch,), generator=generator, device=gdev)
    flip = torch.randint(2, (batch, 2), generator=generator, device=gdev).bool()
    dev = images.device
    idx, y0, x0, flip = idx.to(dev), y0.to(dev), x0.to(dev), flip.to(dev)
    ar = torch.arange(patch, device=dev)
    rows = y0[:, None] + torch.where(flip[:, :1], patch - 1 - ar, ar)  # vertical flip
    cols = x0[:, None] + torch.where(flip[:, 1:], patch - 1 - ar, ar)  # horizontal flip
    ch = torch.arange(c, device=dev)
    return images[idx[:, None, None, None], ch[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def reads_files(source: str | None) -> bool:
    """Whether a background source is read from image files (a category or a folder), whose content can change
    under the same name; the procedural kinds and the embedded photographs are code."""
    if source is None:
        return False
    mix = parse_mix(source)
    if mix is not None:
        return reads_files(mix[0]) or reads_files(mix[1])
    return source != "skimage" and source not in PROCEDURAL_KINDS


def fingerprint(split: BackgroundSplit, test: BackgroundSplit) -> dict[str, Any]:
    """sha256 of the training/test image ids + sources, and of their pixels (stored in each cache entry's
    ``provenance.json``; :func:`derain_utils.lab.experiments.data_changed` compares it with the images now)."""
    ids = {
        "train_source": split.source,
        "train_ids": list(split.train_ids),
        "test_source": test.source,
        "test_ids": list(test.test_ids),
    }
    text = json.dumps(ids, sort_keys=True)
    return {
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "train_pixels_sha256": hashlib.sha256(np.ascontiguousarray(split.train).tobytes()).hexdigest(),
        "test_pixels_sha256": hashlib.sha256(np.ascontiguousarray(test.test).tobytes()).hexdigest(),
        "train_source": split.source,
        "test_source": test.source,
        "n_train": len(split.train_ids),
        "test_ids": list(test.test_ids),
    }
