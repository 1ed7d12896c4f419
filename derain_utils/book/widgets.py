"""Explore trained models: any model of a sweep on any test image under any rain.

A sweep (:func:`derain_utils.lab.sweeps.sweep`) trains one model per configuration and
scores it on the same held-out test images under the same rain. The tables say *how
much* rain each model removed; this module shows *what it did*.
:class:`DerainExplorer` holds the models of a sweep (loaded lazily from the model
cache) and the shared test inputs (those of :func:`derain_utils.lab.experiments.held_out`,
the very function the evaluation of a run uses), and returns, for a (set size N, seed,
rain preset, test image), the five images a reader needs to judge a derained result:

=============  ==========================================================
``rainy``      the input O = clip(B + R)
``derained``   the network's output D
``removed``    O - D: what the network took away (compare it with R)
``rain``       the true rain layer R
``background`` the clean image B
=============  ==========================================================

together with the metrics of that one image (``removal``, ``bg_psnr``, ``rain_psnr``,
``psnr``), scored by :func:`derain_utils.measure.scoring.evaluate` as in the sweep's table. A network that *learned
the background* removes streaks it never saw, so ``removed`` looks like ``rain``; a
network that "slacks off" removes only rain that looks like its training rain, and on
unseen rain ``removed`` stays nearly empty.

:meth:`DerainExplorer.widget` wraps this in ipywidgets (dropdowns for N, seed, preset
and image; the figure of :func:`derain_utils.book.pictures.derain_grid` below). The widget
needs a Jupyter front end to be *seen*, but it is built and updated headless too
(tests do so): :meth:`DerainExplorer.update` renders into an ``Output`` widget and
returns the figure.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from derain_utils import store
from derain_utils.book import pictures
from derain_utils.lab import experiments
from derain_utils.measure import metric_table, scoring
from derain_utils.nets import training
from derain_utils.synth import rain

__all__ = ["DerainExplorer", "representative_image"]

ModelSource = nn.Module | Callable[[], nn.Module]

# Fields every config of one explorer must share: they define the test inputs.
_SHARED_FIELDS = ("background", "eval_background", "tile", "n_test", "test_size", "gray", "eval_presets",
                  "eval_seed", "train_rain")


class DerainExplorer:
    """The models of a set-size sweep and their shared test inputs.

    Args:
        models: ``{(n_train, seed): model}``; a value may also be a zero-argument
            callable returning the model (called once, on first use: lazy loading).
        eval_set: ``{preset: EvalInputs}`` as built by :func:`scoring.make_eval_set`.
        image_names: one name per test image (default ``img000``, ``img001``, ...).
        train_preset: the training rain (labels presets in-distribution / OOD).
        device: where to run the models (default CPU).

    Raises:
        ValueError: empty ``models``/``eval_set``, keys that are not ``(int, int)``, values
            that are neither a model nor callable, or a wrong number of ``image_names``.
    """

    def __init__(
        self,
        models: Mapping[tuple[int, int], ModelSource],
        eval_set: Mapping[str, scoring.EvalInputs],
        *,
        image_names: Sequence[str] | None = None,
        train_preset: str = rain.TRAIN_PRESET,
        device: str | torch.device = "cpu",
    ) -> None:
        if not models:
            raise ValueError("models is empty: nothing to explore")
        if not eval_set:
            raise ValueError("eval_set is empty: no test inputs")
        for k, m in models.items():
            if not (isinstance(k, tuple) and len(k) == 2 and all(isinstance(v, (int, np.integer)) for v in k)):
                raise ValueError(f"models keys must be (n_train, seed) integer pairs, got {k!r}")
            if not (isinstance(m, nn.Module) or callable(m)):
                raise ValueError(f"models[{k!r}] must be a torch.nn.Module or a zero-argument callable returning one "
                                 f"(e.g. ExperimentResult.load_model), got {type(m).__name__} {m!r:.60}")
        self._sources: dict[tuple[int, int], ModelSource] = {(int(n), int(s)): m for (n, s), m in models.items()}
        self._loaded: dict[tuple[int, int], nn.Module] = {}
        self.eval_set = dict(eval_set)
        n_images = int(next(iter(self.eval_set.values())).rainy.shape[0])
        if image_names is None:
            image_names = [f"img{i:03d}" for i in range(n_images)]
        if len(image_names) != n_images:
            raise ValueError(f"image_names has {len(image_names)} entries for {n_images} test images")
        self.image_names = [str(x) for x in image_names]
        self.train_preset = train_preset
        self.device = torch.device(device)
        self._ui: dict[str, Any] | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_configs(
        cls,
        configs: Sequence[experiments.ExperimentConfig],
        *,
        data_dir: str | None = None,
        cache_root: str | None = None,
        device: str | torch.device = "cpu",
    ) -> DerainExplorer:
        """The explorer of a sweep's configs; models are read from the cache when first shown.

        The configs must differ only in ``n_train`` and ``seed`` among the fields that
        define the test inputs (background, test size, presets, eval seed, ...); the inputs
        are :func:`experiments.held_out` of the first. Models come from
        :func:`experiments.run` when first shown: a verified cache entry is read, checksums
        checked (run the sweep first); a missing one would be trained then.

        Raises:
            ValueError: no configs, two configs with the same (n_train, seed), or a
                field of ``_SHARED_FIELDS`` that differs between configs (named).
        """
        configs = list(configs)
        if not configs:
            raise ValueError("configs is empty")
        first = configs[0]
        for c in configs[1:]:
            for f in _SHARED_FIELDS:
                if getattr(c, f) != getattr(first, f):
                    raise ValueError(f"configs differ in {f!r} ({getattr(first, f)!r} vs {getattr(c, f)!r}); "
                                     "an explorer needs one set of test inputs")
        root = store.cache_root(cache_root)
        models: dict[tuple[int, int], ModelSource] = {}
        for c in configs:
            key = (c.n_train, c.seed)
            if key in models:
                raise ValueError(f"two configs with n_train={c.n_train}, seed={c.seed}; keep one per (N, seed)")
            models[key] = _cached_loader(c, root, data_dir)
        inputs = experiments.held_out(first, data_dir=data_dir)
        return cls(models, inputs.eval_set, image_names=inputs.names, train_preset=first.train_rain, device=device)

    # ------------------------------------------------------------------ what there is

    @property
    def ns(self) -> list[int]:
        """Training-set sizes, ascending."""
        return sorted({n for n, _ in self._sources})

    @property
    def seeds(self) -> list[int]:
        """Training seeds, ascending."""
        return sorted({s for _, s in self._sources})

    @property
    def presets(self) -> list[str]:
        """Rain presets of the test inputs, in evaluation order."""
        return list(self.eval_set)

    def is_in_distribution(self, preset: str) -> bool:
        """Does ``preset`` overlap the training rain on every field?"""
        return rain.overlaps(self.train_preset, self.eval_set[preset].spec)

    def model(self, n_train: int, seed: int) -> nn.Module:
        """The model trained on ``n_train`` tiles with ``seed`` (loaded once, in eval mode)."""
        key = (int(n_train), int(seed))
        if key not in self._sources:
            raise ValueError(f"no model for n_train={n_train}, seed={seed}; have {sorted(self._sources)}")
        if key not in self._loaded:
            src = self._sources[key]
            m = src if isinstance(src, nn.Module) else src()
            if not isinstance(m, nn.Module):
                raise ValueError(f"the model source for n_train={n_train}, seed={seed} returned "
                                 f"{type(m).__name__}, not a torch.nn.Module")
            self._loaded[key] = m.to(self.device).eval()
        return self._loaded[key]

    def _image_index(self, image: int | str) -> int:
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            i = int(image)
            if not 0 <= i < len(self.image_names):
                raise ValueError(f"image={image} is out of range for {len(self.image_names)} test images")
            return i
        if image in self.image_names:
            return self.image_names.index(image)
        raise ValueError(f"image={image!r} is not a test image; valid: {self.image_names}")

    # ------------------------------------------------------------------ examples

    def example(self, n_train: int, seed: int, preset: str, image: int | str) -> dict[str, Any]:
        """The five images and the metrics of one model on one test image.

        Returns:
            dict with ``rainy``, ``derained``, ``removed`` (rainy - derained, signed),
            ``rain`` and ``background`` as float32 numpy ``(H, W, C)`` (``rain`` is
            ``(H, W, 1)``), the scalars ``removal``, ``bg_psnr``, ``rain_psnr``, ``psnr``
            and the identifiers ``n_train``, ``seed``, ``preset``, ``image``,
            ``in_distribution``.
        """
        if preset not in self.eval_set:
            raise ValueError(f"preset={preset!r} is not evaluated here; valid: {self.presets}")
        i = self._image_index(image)
        e = self.eval_set[preset]
        model = self.model(n_train, seed)
        one = scoring.EvalInputs(spec=e.spec, background=e.background[i:i + 1], rain=e.rain[i:i + 1],
                                 mask=e.mask[i:i + 1], rainy=e.rainy[i:i + 1])
        score = scoring.evaluate(model, {preset: one}, device=self.device, train_spec=self.train_preset,
                                 names=[self.image_names[i]], ssim=False).iloc[0]
        derained = training.predict(model, one.rainy, device=self.device)[0]
        hwc = lambda t: t.permute(1, 2, 0).numpy().astype(np.float32)  # noqa: E731
        b, o, d, r = hwc(e.background[i]), hwc(e.rainy[i]), hwc(derained), hwc(e.rain[i])
        return {
            "rainy": o,
            "derained": d,
            "removed": o - d,
            "rain": r,
            "background": b,
            **{m: float(score[m]) for m in ("removal", "bg_psnr", "rain_psnr", "psnr")},
            "n_train": int(n_train),
            "seed": int(seed),
            "preset": preset,
            "image": self.image_names[i],
            "in_distribution": self.is_in_distribution(preset),
        }

    @staticmethod
    def label(ex: Mapping[str, Any]) -> str:
        """A row label: set size, seed and the image's metrics."""
        return "\n".join([f"N = {ex['n_train']}, seed {ex['seed']}",
                          *(metric_table.describe(m, ex[m]) for m in ("removal", "bg_psnr", "psnr"))])

    def figure(self, n_train: int, seed: int, preset: str, image: int | str) -> Figure:
        """One row of :func:`pictures.derain_grid` for this model, preset and image."""
        ex = self.example(n_train, seed, preset, image)
        kind = "in-distribution" if ex["in_distribution"] else "OOD"
        return pictures.derain_grid([ex], [self.label(ex)],
                                    suptitle=f"{ex['image']} under {preset} rain ({kind})")

    # ------------------------------------------------------------------ widget

    def widget(self) -> ipywidgets.VBox:
        """Dropdowns for N, seed, rain preset and test image above the figure of the choice.

        Changing a dropdown calls :meth:`update`. Returns the (already rendered) widget;
        in a notebook, ``display(explorer.widget())``.
        """
        preset_options = [(f"{p} ({'in-distribution' if self.is_in_distribution(p) else 'OOD'})", p)
                          for p in self.presets]
        ood = [p for p in self.presets if not self.is_in_distribution(p)]
        controls = {
            "n_train": ipywidgets.Dropdown(options=self.ns, value=self.ns[0], description="N"),
            "seed": ipywidgets.Dropdown(options=self.seeds, value=self.seeds[0], description="seed"),
            "preset": ipywidgets.Dropdown(options=preset_options, value=(ood or self.presets)[0],
                                          description="rain"),
            # (label, value) pairs: the image name is shown, its index returned
            "image": ipywidgets.Dropdown(options=[(name, i) for i, name in enumerate(self.image_names)], value=0,
                                         description="image"),
        }
        output = ipywidgets.Output()
        self._ui = {"controls": controls, "output": output}
        for w in controls.values():
            w.observe(lambda _change: self.update(), names="value")
        box = ipywidgets.VBox([ipywidgets.HBox(list(controls.values())), output])
        self.update()
        return box

    def update(self) -> Figure:
        """Render the current choice of the widget's dropdowns into its output; returns the figure.

        Raises:
            RuntimeError: :meth:`widget` has not been called.
        """
        if self._ui is None:
            raise RuntimeError("call widget() before update()")
        c = self._ui["controls"]
        fig = self.figure(c["n_train"].value, c["seed"].value, c["preset"].value, c["image"].value)
        out: ipywidgets.Output = self._ui["output"]
        out.clear_output(wait=True)
        with out:
            from IPython.display import display

            display(fig)
        plt.close(fig)
        self._ui["figure"] = fig
        return fig


def _cached_loader(
    config: experiments.ExperimentConfig, root: Path, data_dir: str | None
) -> Callable[[], nn.Module]:
    """A zero-argument loader of ``config``'s trained model (:func:`experiments.run`: verified cache hit)."""

    def load() -> nn.Module:
        return experiments.run(config, cache_root=root, data_dir=data_dir, progress=False).load_model()

    return load


def representative_image(
    df: pd.DataFrame,
    preset: str,
    n_low: int,
    n_high: int,
    *,
    metric: str = "removal",
    x: str = "n_train",
) -> str:
    """The test image whose change of ``metric`` from ``n_low`` to ``n_high`` is the median one.

    For each image, the change is the seed mean of ``metric`` at ``n_low`` minus that at
    ``n_high`` (on ``preset``); the image at the median of those changes (the lower
    median for an even count) is returned, so an example figure shows a typical case,
    not the most striking one.

    Raises:
        ValueError: missing columns, or no image evaluated at both sizes on ``preset``.
    """
    need = ["image", "preset", "seed", x, metric]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"df lacks column(s) {missing}")
    d = df[(df["preset"] == preset) & df[x].isin([n_low, n_high])]
    wide = d.groupby(["image", x])[metric].mean().unstack(x)
    if n_low not in wide.columns or n_high not in wide.columns:
        raise ValueError(f"preset={preset!r} has no rows at both {x}={n_low} and {x}={n_high}")
    change = (wide[n_low] - wide[n_high]).dropna().sort_values(kind="stable")
    if change.empty:
        raise ValueError(f"no image has finite {metric!r} at both sizes on preset={preset!r}")
    return str(change.index[(len(change) - 1) // 2])
