"""derain_utils: the tested package behind the *slacking-off* monograph.

Reproduces and extends Gu et al., "Networks are Slacking Off: Understanding
Generalization Problem in Image Deraining" (NeurIPS 2023, arXiv 2305.15134).

Imports flow one way (CONVENTIONS.md): ``rain``, ``backgrounds``, ``complexity``,
``metrics`` first; then ``models`` and ``training``; then ``experiments``; then the
notebooks. Import submodules explicitly, e.g.
``from derain_utils import rain, backgrounds, complexity, metrics``.
"""

__version__ = "0.1.0"
