"""derain_utils: the tested package behind the *slacking-off* monograph.

Reproduces and extends Gu et al., "Networks are Slacking Off: Understanding
Generalization Problem in Image Deraining" (NeurIPS 2023, arXiv 2305.15134).

``ARCHITECTURE.md`` at the repository root is the map: the layers of this package
(imports flow one way, from ``store``, ``rain`` and ``backgrounds`` up to
``experiments``, ``sweeps`` and the notebooks' helpers), the data flow from a rain
preset to a verdict, where a newcomer starts, and the house rules. Import submodules
explicitly, e.g. ``from derain_utils import rain, backgrounds, experiments``.

``DERAIN_PROGRESS=text`` (set by the monograph runner for the kernels it starts) makes every
``tqdm.auto`` progress bar a text bar on stderr instead of a notebook widget, so that a batch run
(``python -m derain_utils.monograph run --log-output``) streams its progress to the terminal and the
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
