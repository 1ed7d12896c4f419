"""Where real images come from: a user-named folder, or a checksummed download.

The study needs real backgrounds (faces, natural scenes, urban scenes, manga) and
real rain. None of it ships with this repository: several sources allow
non-commercial research use only, and some state no licence at all. There are two
ways in.

1. **A folder you already have.** :func:`data_root` resolves it: an explicit
   ``data_dir`` argument wins, then the ``DERAIN_DATA`` environment variable, else
   ``None`` (the embedded offline sources in :mod:`derain_utils.synth.backgrounds` are
   used instead). The folder holds one sub-folder per named set, e.g.
   ``$DERAIN_DATA/bg_natural/*.jpg``. In development ``DERAIN_DATA=../shared/data``.

2. **A public copy, fetched when online.** ``data/registry.tsv`` (metadata only,
   never images) lists, for every file, the public GitHub repository, the commit,
   the path, the URL ``https://raw.githubusercontent.com/<repo>/<commit>/<path>``,
   its sha256 and its size; ``data/sets.tsv`` gives, once per set, what it is, where
   it comes from, its licence/terms, its citation, and its file count and size.
   :func:`fetch` downloads a set with pooch into a user cache, checks every
   sha256, and returns the folder. A file whose hash does not match is deleted,
   never kept: the cache holds verified files or nothing. The command line
   ``python -m derain_utils.synth.data fetch [SET ...] [--dest DIR]`` (:func:`main`)
   fetches sets into a folder laid out like ``$DERAIN_DATA`` (one sub-folder per set,
   the same names as the development data), ready for ``export DERAIN_DATA=DIR``.

   The fetched files are the **untouched originals at full resolution** (e.g.
   Urban100 at 1024 px, Manga109 covers at 827x1170). The development copies in
   ``../shared/data`` are downscaled to a 256 px long side and re-saved as JPEG,
   so their pixels, sizes and hashes differ from the originals'. A fetched file
   keeps the development copy's file *stem* (``urban100_img_001``) with the
   original's extension (``.png``), so image ids, and therefore the fixed
   train/test split in :func:`derain_utils.synth.backgrounds.draw_split`, which hashes
   the stem, agree between the two.

The registry is regenerated from ``ORIGINALS.tsv`` (the provenance table that
ships beside the development data) with :func:`build_registry`, which writes both
tables; the per-set descriptions, licence/terms and citations live in :data:`SETS`
(and, for readers, in ``data/README.md``).
"""
from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import pandas as pd

from derain_utils import store

__all__ = [
    "ENV_DATA",
    "ENV_CACHE",
    "RAW_BASE_URL",
    "REGISTRY_PATH",
    "WEIGHTS_ORIGINALS_PATH",
    "REGISTRY_COLUMNS",
    "SETS_PATH",
    "SETS_COLUMNS",
    "SETS",
    "data_root",
    "cache_root",
    "load_registry",
    "build_registry",
    "raw_url",
    "sets_table",
    "fetch",
    "sha256_file",
    "fetch_sets",
    "main",
]

ENV_DATA = "DERAIN_DATA"
"""Environment variable naming the folder of real image sets."""

ENV_CACHE = "DERAIN_CACHE"
"""Environment variable overriding the download cache (default: pooch.os_cache("slacking-off"))."""

RAW_BASE_URL = "https://raw.githubusercontent.com"
"""Base of every registry URL: ``<base>/<repo>/<commit>/<path>``."""

REGISTRY_PATH = Path(__file__).resolve().parents[2] / "data" / "registry.tsv"
"""The registry in a source checkout (``data/registry.tsv`` beside the package)."""

WEIGHTS_ORIGINALS_PATH = REGISTRY_PATH.with_name("originals_weights.tsv")
"""Provenance rows (``ORIGINALS.tsv`` columns) of the published network weights, from each weights folder's
PROVENANCE.md: the development data's ``ORIGINALS.tsv`` lists images only. The registry is built from both."""

ORIGINALS_COLUMNS = ("set", "shared_file", "repo", "commit", "path", "sha256", "bytes")
REGISTRY_COLUMNS = ("set", "file", "url", "sha256", "bytes", "repo", "commit", "path")
"""Columns of ``data/registry.tsv``: one row per original file."""

SETS_PATH = REGISTRY_PATH.with_name("sets.tsv")
"""The per-set table in a source checkout (``data/sets.tsv``)."""

SETS_COLUMNS = ("set", "files", "bytes", "what", "source", "licence", "citation")
"""Columns of ``data/sets.tsv``: one row per set (file count and total size from the registry)."""

#: Per-set facts for the registry and data/README.md. ``licence`` is the licence or
#: terms *as stated in the source repositories* (see each set's PROVENANCE.md), kept
#: short; ``citation`` is the paper to cite for the underlying data set.
SETS: dict[str, dict[str, str]] = {
    "bg_faces_celebahq": {
        "what": "face backgrounds (CelebA-HQ samples), low complexity",
        "source": "clovaai/stargan-v2, switchablenorms/CelebAMask-HQ, wyhuai/DDNM",
        "licence": (
            "non-commercial research only: CC BY-NC 4.0 (stargan-v2 files); CelebAMask-HQ dataset agreement "
            "(non-commercial research, no redistribution); DDNM's MIT licence covers its code, the images are "
            "CelebA-HQ samples"
        ),
        "citation": (
            "Karras et al., Progressive Growing of GANs, ICLR 2018 (CelebA-HQ); "
            "Lee et al., MaskGAN, CVPR 2020 (CelebAMask-HQ)"
        ),
    },
    "bg_natural": {
        "what": "natural-scene backgrounds (Kodak24, CBSD68 subset, Sun-Hays80 subset), medium complexity",
        "source": "cszn/FFDNet (Kodak24), majedelhelou/denoising_datasets (CBSD68, Sun-Hays80)",
        "licence": (
            "no licence stated (FFDNet: none; denoising_datasets: 'no ownership claimed'); research use, "
            "original data-set terms apply"
        ),
        "citation": (
            "Kodak Lossless True Color Image Suite; Martin et al., ICCV 2001 (BSD); "
            "Sun & Hays, ICCP 2012 (Sun-Hays80)"
        ),
    },
    "bg_urban100": {
        "what": "urban/building backgrounds (Urban100, colour), high complexity",
        "source": "majedelhelou/denoising_datasets (CUrban100)",
        "licence": "no licence stated ('no ownership claimed'); research use",
        "citation": "Huang, Singh & Ahuja, Single Image Super-resolution from Transformed Self-Exemplars, CVPR 2015",
    },
    "bg_manga109": {
        "what": "manga cover backgrounds (Manga109, SR-benchmark version), line art",
        "source": "majedelhelou/denoising_datasets (CManga109)",
        "licence": (
            "no licence stated ('no ownership claimed'); official Manga109 terms: academic research only, "
            "no redistribution"
        ),
        "citation": "Matsui et al., Sketch-based Manga Retrieval using Manga109 Dataset, MTAP 2017",
    },
    "rain100L_dev": {
        "what": "8 paired Rain100L test images (input = rainy, target = clean)",
        "source": "ytpeng-aimlab/Rain2Avoid-Self-Supervised-Single-Image-Deraining-with-Non-local-Stochastic-Sampling",
        "licence": "no licence or data terms stated; research use",
        "citation": "Yang et al., Deep Joint Rain Detection and Removal from a Single Image, CVPR 2017",
    },
    "rain100H_dev": {
        "what": "8 paired Rain100H test images (heavy rain; same indices and clean targets as rain100L_dev)",
        "source": "kuijiang94/MSPFN (model/test/test_data/R100H)",
        "licence": "no licence or data terms stated (the repository asks to cite the MSPFN papers); research use",
        "citation": "Yang et al., Deep Joint Rain Detection and Removal from a Single Image, CVPR 2017",
    },
    "real_rain_paired_dev": {
        "what": "2 real rainy photographs with ground truth (SPA-Data test pairs, heavy-rain cases)",
        "source": "hongwang01/VRGNet (for_spa/interpolation_results/test_data/spa-data)",
        "licence": (
            "VRGNet: no licence or data terms stated; SPA-Data: copyright Dalian University of Technology and "
            "City University of Hong Kong, redistribution permitted with the copyright notice, conditions and "
            "disclaimer (SPANet License.txt); research evaluation"
        ),
        "citation": (
            "Wang et al., Spatial Attentive Single-Image Deraining with a High Quality Real Rain Dataset, "
            "CVPR 2019 (SPA-Data)"
        ),
    },
    "checkpoints_prenet": {
        "what": "published PReNet weights (T = 6 stages) trained on Rain100L, Rain100H and Rain1400; no images",
        "source": "csdwren/PReNet (logs/<set>/PReNet6/net_latest.pth)",
        "licence": "no licence file; the repository asks users to cite the paper; research use only, do not publish",
        "citation": "Ren, Zuo, Hu, Zhu & Meng, Progressive Image Deraining Networks: A Better and Simpler Baseline, "
                    "CVPR 2019",
    },
    "real_rain_misc": {
        "what": "real rainy photos without ground truth (only 5 of the 15 development files have a public original)",
        "source": "wavefull/Derain-and-Defog (dataset/test_real)",
        "licence": "no licence stated; image provenance undocumented; research use",
        "citation": "source README asks to cite RESCAN: Li et al., ECCV 2018",
    },
}

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------- paths
def data_root(data_dir: str | os.PathLike | None = None) -> Path | None:
    """Resolve the folder of real image sets.

    Precedence: explicit ``data_dir`` > ``$DERAIN_DATA`` > ``None``. An empty string
    counts as unset. A path that is given but is not an existing folder is an error
    (never a silent fall-back), so a typo cannot quietly switch the study to other data.

    Returns:
        The resolved folder, or ``None`` when neither is set.

    Raises:
        FileNotFoundError: naming the path and where it came from (``data_dir`` or
            ``DERAIN_DATA``).
    """
    for value, origin in ((data_dir, "data_dir"), (os.environ.get(ENV_DATA), ENV_DATA)):
        if value is None or str(value) == "":
            continue
        path = Path(value).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"{origin}={str(value)!r} is not an existing folder; point {origin} at the folder that holds the "
                f"image sets (e.g. bg_natural/), or unset it to use the offline sources"
            )
        return path.resolve()
    return None


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Download cache: explicit ``cache_dir`` > ``$DERAIN_CACHE`` > ``pooch.os_cache("slacking-off")``."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("slacking-off"))


# --------------------------------------------------------------------------- registry
URL_SCHEMES: tuple[str, ...] = ("https", "http", "ftp", "sftp")
"""The protocols a ``base_url`` may use (pooch's downloaders); any other is refused before downloading."""


def raw_url(repo: str, commit: str, path: str, base_url: str = RAW_BASE_URL) -> str:
    """``<base_url>/<repo>/<commit>/<path>``, percent-encoding the path (spaces, brackets)."""
    return f"{base_url.rstrip('/')}/{quote(f'{repo}/{commit}/{path}', safe='/')}"


def _local_name(shared_file: str, original_path: str) -> str:
    """The cached file name: the development copy's relative name with the original's suffix."""
    shared = PurePosixPath(shared_file)
    suffix = PurePosixPath(original_path).suffix
    return str(shared.with_suffix(suffix)) if suffix else str(shared)


def _check_relative(name: str, field: str, where: str) -> None:
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts:
        raise ValueError(f"{where}: field {field!r} must be a relative path inside the set folder, got {name!r}")


def build_registry(
    originals_tsv: str | os.PathLike | Sequence[str | os.PathLike],
    out_tsv: str | os.PathLike | None = None,
    sets: dict[str, dict[str, str]] | None = None,
    sets_tsv: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Build ``data/registry.tsv`` (and ``data/sets.tsv``) from an ``ORIGINALS.tsv`` provenance table.

    Args:
        originals_tsv: tab-separated file with columns ``set, shared_file, repo, commit,
            path, sha256, bytes`` (one row per original file), or several such files read as one
            table (the development data's ``ORIGINALS.tsv`` and :data:`WEIGHTS_ORIGINALS_PATH`).
        out_tsv: where to write the registry (tab-separated, sorted by set then file);
            ``None`` writes nothing.
        sets: per-set ``what``, ``source``, ``licence`` and ``citation`` (default
            :data:`SETS`). Every set in the table must have an entry with a licence and
            a citation: a file without terms is not allowed.
        sets_tsv: where to write the per-set table (:func:`sets_table`, columns
            :data:`SETS_COLUMNS`); default ``sets.tsv`` beside ``out_tsv`` (nothing when
            ``out_tsv`` is None too).

    Returns:
        The registry with columns :data:`REGISTRY_COLUMNS`. ``file`` is the name the
        file gets in the cache: the development copy's name (sub-folders kept, e.g.
        ``input/16.png``) with the original's extension. Licence and citation are not
        repeated per file: they are in the per-set table.

    Raises:
        FileNotFoundError: ``originals_tsv`` does not exist.
        ValueError: a missing column, a malformed sha256 or size, a duplicate file,
            an unsafe path, or a set without licence/citation (each names the row).
    """
    sources = [originals_tsv] if isinstance(originals_tsv, (str, os.PathLike)) else list(originals_tsv)
    sets = SETS if sets is None else sets
    tables = []
    for src in map(Path, sources):
        if not src.is_file():
            raise FileNotFoundError(f"originals_tsv={str(src)!r} does not exist")
        table = pd.read_csv(src, sep="\t", dtype=str, keep_default_na=False)
        missing = [c for c in ORIGINALS_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"{src}: missing column(s) {missing}; expected {list(ORIGINALS_COLUMNS)}")
        tables.append(table.assign(_src=str(src), _row=range(2, len(table) + 2)))
    src = " + ".join(map(str, sources))
    rows: list[dict[str, Any]] = []
    for _, r in pd.concat(tables, ignore_index=True).iterrows():
        where = f"{r['_src']} row {r['_row']} (set {r['set']!r}, file {r['shared_file']!r})"
        if r["set"] not in sets or not {"licence", "citation"} <= set(sets[r["set"]]):
            raise ValueError(f"{where}: set {r['set']!r} has no licence/citation entry in `sets` (data.SETS)")
        sha = r["sha256"].strip().lower()
        if not _SHA256.match(sha):
            raise ValueError(f"{where}: field 'sha256' is not 64 hex digits: {r['sha256']!r}")
        try:
            size = int(r["bytes"])
        except ValueError:
            size = -1
        if size <= 0:
            raise ValueError(f"{where}: field 'bytes' must be a positive integer, got {r['bytes']!r}")
        for field in ("repo", "commit", "path"):
            if not r[field].strip():
                raise ValueError(f"{where}: field {field!r} is empty")
        name = _local_name(r["shared_file"], r["path"])
        _check_relative(name, "shared_file", where)
        rows.append(
            {
                "set": r["set"],
                "file": name,
                "url": raw_url(r["repo"], r["commit"], r["path"]),
                "sha256": sha,
                "bytes": size,
                "repo": r["repo"],
                "commit": r["commit"],
                "path": r["path"],
            }
        )
    out = pd.DataFrame(rows, columns=list(REGISTRY_COLUMNS))
    dup = out[out.duplicated(["set", "file"], keep=False)]
    if len(dup):
        raise ValueError(f"{src}: duplicate cached file name(s) {sorted(set(dup['set'] + '/' + dup['file']))}")
    out = out.sort_values(["set", "file"], kind="stable").reset_index(drop=True)
    if out_tsv is not None:
        Path(out_tsv).parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(out_tsv, sep="\t", index=False, lineterminator="\n")
        if sets_tsv is None:
            sets_tsv = Path(out_tsv).with_name("sets.tsv")
    if sets_tsv is not None:
        table = sets_table(out, sets={s: sets[s] for s in sets if s in set(out["set"])})
        Path(sets_tsv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(sets_tsv, sep="\t", index=False, lineterminator="\n")
    return out


def _read_registry(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(
            f"registry {str(path)!r} not found; it ships in the source checkout as data/registry.tsv "
            f"(rebuild it with derain_utils.synth.data.build_registry)"
        )
    reg = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in ("set", "file", "sha256", "repo", "commit", "path") if c not in reg.columns]
    if missing:
        raise ValueError(f"registry {str(path)!r}: missing column(s) {missing}")
    return reg


@functools.lru_cache(maxsize=4)
def _registry_cached(path: str) -> pd.DataFrame:
    return _read_registry(Path(path))


def load_registry(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The registry as a DataFrame (default :data:`REGISTRY_PATH`; cached, returns a copy)."""
    return _registry_cached(str(Path(path) if path is not None else REGISTRY_PATH)).copy()


def __getattr__(name: str) -> Any:
    # `REGISTRY` is loaded on first use (PEP 562), so importing this module never reads files.
    if name == "REGISTRY":
        return load_registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sets_table(registry: pd.DataFrame | None = None, sets: dict[str, dict[str, str]] | None = None) -> pd.DataFrame:
    """One row per set of ``sets`` (default :data:`SETS`), columns :data:`SETS_COLUMNS`.

    ``files`` and ``bytes`` count the set's rows of the registry (default the shipped one);
    the other columns come from ``sets`` (a missing ``what`` or ``source`` is left empty).
    """
    reg = load_registry() if registry is None else registry
    sets = SETS if sets is None else sets
    sizes = pd.to_numeric(reg["bytes"]).groupby(reg["set"]).agg(["size", "sum"])
    rows = []
    for s, info in sets.items():
        files, total = (int(sizes.loc[s, "size"]), int(sizes.loc[s, "sum"])) if s in sizes.index else (0, 0)
        rows.append({"set": s, "files": files, "bytes": total,
                     **{k: info.get(k, "") for k in ("what", "source", "licence", "citation")}})
    return pd.DataFrame(rows, columns=list(SETS_COLUMNS))


# --------------------------------------------------------------------------- fetch
sha256_file = store.file_hash  # the package's one file checksum (pooch.file_hash, sha256)


def fetch(
    set_name: str,
    cache_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    *,
    registry: pd.DataFrame | str | os.PathLike | None = None,
    progressbar: bool = True,
) -> Path:
    """Download one registered set (if not already cached) and return its folder.

    Every file is fetched with pooch against its known sha256. Files already in the
    cache with the right hash are not downloaded again; a cached file with a wrong
    hash is replaced. A download whose hash does not match is deleted, so the cache
    never holds a partial or corrupt file.

    Args:
        set_name: a set in the registry (e.g. ``"bg_urban100"``).
        cache_dir: cache root (default ``$DERAIN_CACHE``, else ``pooch.os_cache("slacking-off")``);
            the set lands in ``<cache_dir>/<set_name>/``.
        base_url: mirror to fetch from instead of ``https://raw.githubusercontent.com``;
            files are requested as ``<base_url>/<repo>/<commit>/<path>`` (the raw.github
            layout), so tests and mirrors only swap the host.
        registry: a registry DataFrame or TSV path (default: ``data/registry.tsv``).
        progressbar: show one tqdm bar over the set's files.

    Returns:
        ``<cache_dir>/<set_name>``, holding the set's original, full-resolution files
        (see the module docstring: they differ from the downscaled development copies).

    Raises:
        ValueError: unknown ``set_name`` (lists the registered sets), a ``base_url`` of another
            protocol, or a checksum mismatch (names the file and URL; nothing is kept).
        StoreError: the set's folder cannot be made (a file in the way, no permission).
        ConnectionError: the server could not be reached or answered with an error.
    """
    import pooch
    import requests
    from tqdm.auto import tqdm

    if isinstance(registry, pd.DataFrame):
        reg = registry
    else:
        reg = load_registry(registry)
    names = sorted(reg["set"].unique())
    if not isinstance(set_name, str) or set_name not in names:
        raise ValueError(f"set_name={set_name!r} is not in the registry; registered sets: {names}")
    rows = reg[reg["set"] == set_name]
    scheme = (base_url or RAW_BASE_URL).split("://", 1)[0].lower() if "://" in (base_url or RAW_BASE_URL) else ""
    if scheme not in URL_SCHEMES:
        raise ValueError(f"base_url {base_url!r} must start with one of {', '.join(s + '://' for s in URL_SCHEMES)} "
                         f"(the protocols pooch downloads with)")
    folder = store.ensure_dir(cache_root(cache_dir) / set_name, "download folder")  # a file in the way: named
    files: dict[str, str] = {}
    urls: dict[str, str] = {}
    for _, r in rows.iterrows():
        _check_relative(r["file"], "file", f"registry set {set_name!r}")
        sha = str(r["sha256"]).lower()
        if not _SHA256.match(sha):
            raise ValueError(f"registry set {set_name!r}, file {r['file']!r}: field 'sha256' is malformed: {sha!r}")
        files[r["file"]] = f"sha256:{sha}"
        urls[r["file"]] = raw_url(r["repo"], r["commit"], r["path"], base_url or RAW_BASE_URL)
    pup = pooch.create(path=folder, base_url="", registry=files, urls=urls, retry_if_failed=0)
    for name in tqdm(sorted(files), desc=f"fetch {set_name}", unit="file", disable=not progressbar):
        try:
            pup.fetch(name, progressbar=False)
        except ValueError as err:  # pooch: hash mismatch (the temporary download is already deleted)
            raise ValueError(
                f"checksum mismatch for {set_name}/{name} downloaded from {urls[name]}: expected "
                f"{files[name]}; the download was discarded and nothing was kept in {folder}. ({err})"
            ) from err
        except requests.exceptions.RequestException as err:
            raise ConnectionError(
                f"could not download {set_name}/{name} from {urls[name]}: {err}. Offline? Use DERAIN_DATA "
                f"(a local copy) or the offline sources ('deadleaves', 'skimage', procedural backgrounds)."
            ) from err
    return folder


# --------------------------------------------------------------------------- command line
def _stem_clashes(folder: Path, registered: list[str]) -> list[tuple[str, str]]:
    """(present file, registered file) pairs with the same relative stem but another name."""
    if not folder.is_dir():
        return []
    by_stem = {str(PurePosixPath(f).with_suffix("")): f for f in registered}
    out = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        rel = p.relative_to(folder).as_posix()
        twin = by_stem.get(str(PurePosixPath(rel).with_suffix("")))
        if twin is not None and twin != rel:
            out.append((rel, twin))
    return out


def fetch_sets(
    names: list[str] | tuple[str, ...] | None = None,
    dest: str | os.PathLike | None = None,
    base_url: str | None = None,
    *,
    registry: pd.DataFrame | str | os.PathLike | None = None,
    progressbar: bool = True,
) -> dict[str, Path]:
    """Fetch several registered sets into one folder laid out like ``$DERAIN_DATA``.

    Each set lands in ``<dest>/<set>/`` (the development data's folder names, e.g.
    ``<dest>/bg_urban100/urban100_img_001.png``, ``<dest>/rain100L_dev/input/16.png``), every
    file checked against its sha256 (:func:`fetch`); files already there with the right hash
    are kept, so rerunning only completes what is missing.

    Args:
        names: sets to fetch (default: every set in the registry).
        dest: the folder (default :func:`cache_root`: ``$DERAIN_CACHE`` or pooch's user cache).
        base_url, registry, progressbar: as for :func:`fetch`.

    Returns:
        set name -> its folder, in the order fetched.

    Raises:
        ValueError: an unknown set (lists the registered ones, before anything is downloaded),
            a checksum mismatch, or a destination folder that already holds *another copy* of a
            registered file (same name, other extension, e.g. the downscaled ``.jpg`` development
            copy of a ``.png`` original): two copies of one image would both be read as
            backgrounds, so nothing is fetched there.
        ConnectionError: offline, or the server failed (the message says which file and URL).
    """
    reg = registry if isinstance(registry, pd.DataFrame) else load_registry(registry)
    known = sorted(reg["set"].unique())
    names = list(known if not names else names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown set(s) {unknown}; registered sets: {known}")
    root = cache_root(dest)
    for name in names:
        clashes = _stem_clashes(root / name, reg.loc[reg["set"] == name, "file"].tolist())
        if clashes:
            show = ", ".join(f"{a} (registered: {b})" for a, b in clashes[:3])
            raise ValueError(
                f"{str(root / name)!r} already holds {len(clashes)} other copies of registered files, e.g. {show}; "
                f"fetching the originals there would put two copies of one image in the set. Choose another --dest "
                f"(the development copies are downscaled JPEGs, the registry fetches the full-resolution originals)"
            )
    out: dict[str, Path] = {}
    for name in dict.fromkeys(names):
        out[name] = fetch(name, cache_dir=root, base_url=base_url, registry=reg, progressbar=progressbar)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m derain_utils.synth.data {list, fetch}``: list the registered sets, or fetch them.

    ``fetch [SET ...] [--dest DIR]`` downloads the sets (default: all) into ``DIR/<set>/``
    (default ``$DERAIN_CACHE`` or pooch's user cache), checks every sha256, and prints the
    ``export DERAIN_DATA=...`` line to use them. Exit status 0 on success, 1 when offline or a
    download fails (a one-line message, no traceback), 2 for bad arguments.
    """
    parser = argparse.ArgumentParser(
        prog="python -m derain_utils.synth.data",
        description="The registry of public image sets: list them, or fetch them (checksums verified) "
                    "into a folder to use as DERAIN_DATA.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the registered sets (files, size, licence, citation)")
    fp = sub.add_parser("fetch", help="download registered sets into DEST/<set>/ (sha256 checked)")
    fp.add_argument("sets", nargs="*", metavar="SET", help="sets to fetch (default: all registered sets)")
    fp.add_argument("--dest", default=None,
                    help="folder to lay the sets out in, one sub-folder per set (default: $DERAIN_CACHE, "
                         "else pooch's user cache for 'slacking-off')")
    fp.add_argument("--base-url", default=None, help="mirror serving <repo>/<commit>/<path> (default: "
                                                     f"{RAW_BASE_URL})")
    fp.add_argument("--registry", default=None, help="registry TSV (default: data/registry.tsv)")
    fp.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            table = sets_table(load_registry()).assign(MB=lambda t: (t["bytes"] / 1e6).round(1))
            print(table[["set", "files", "MB", "what"]].to_string(index=False))
            print("licences and citations: data/sets.tsv and data/README.md")
            return 0
        folders = fetch_sets(args.sets, args.dest, args.base_url, registry=args.registry,
                             progressbar=not args.quiet)
    except store.StoreError as err:  # --dest or $DERAIN_CACHE is a file, or cannot be written
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ValueError) and ("unknown set" in str(err) or "base_url" in str(err)) else 1
    except ConnectionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, folder in folders.items():
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        print(f"{name}: {count} verified files in {folder}")
    root = next(iter(folders.values())).parent if folders else cache_root(args.dest)
    print(f"export {ENV_DATA}={root}")
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through main() in the tests
    raise SystemExit(main())
