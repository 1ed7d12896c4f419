"""derain_utils: the tested package behind the *slacking-off* monograph.

Reproduces and extends Gu et al., "Networks are Slacking Off: Understanding
Generalization Problem in Image Deraining" (NeurIPS 2023, arXiv 2305.15134).

Imports flow one way (CONVENTIONS.md): ``rain``, ``backgrounds``, ``complexity``,
``metrics`` first; then ``models`` and ``training``; then ``experiments``; then the
notebooks. Import submodules explicitly, e.g.
``from derain_utils import rain, backgrounds, complexity, metrics``.

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
