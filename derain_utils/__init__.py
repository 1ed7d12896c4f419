"""derain_utils: the tested package behind the *slacking-off* monograph.

Reproduces and extends Gu et al., "Networks are Slacking Off: Understanding
Generalization Problem in Image Deraining" (NeurIPS 2023, arXiv 2305.15134).

The package is six subpackages over one storage module, in the order of the data flow:
``synth`` (what goes in: rain, backgrounds, real image sets), ``nets`` (the networks and
their training), ``measure`` (what is measured: metrics, the scorer, baselines, outcomes),
``lab`` (making and caching models: experiments, sweeps, profiles, designs), ``stats``
(what is concluded: model-level tests, the verdict) and ``book`` (how readers meet it:
notebook helpers, the runner, figures, widgets, the report card), over ``store``.
``ARCHITECTURE.md`` at the repository root is the map: every module in one line, the data
flow from a rain preset to a verdict, where a newcomer starts, and the house rules. Import
modules by subpackage, e.g. ``from derain_utils.synth import rain, backgrounds``.

``DERAIN_PROGRESS=text`` (set by the monograph runner for the kernels it starts) makes every
``tqdm.auto`` progress bar a text bar on stderr instead of a notebook widget, so that a batch run
(``python -m derain_utils.book.monograph run --log-output``) streams its progress to the terminal and the
executed notebook and its HTML page keep it as text.
"""
import os as _os

__version__ = "0.1.0"


def _text_progress_bars() -> None:
    """With ``DERAIN_PROGRESS=text``: ``tqdm.auto`` gives text bars (``tqdm.std``), not widgets."""
    if _os.environ.get("DERAIN_PROGRESS", "").strip().lower() != "text":
        return
    import tqdm.auto
    import tqdm.std

    tqdm.auto.tqdm, tqdm.auto.trange = tqdm.std.tqdm, tqdm.std.trange


_text_progress_bars()
