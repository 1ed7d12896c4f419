"""derain_utils: the tested package behind the *slacking-off* monograph.

Reproduces and extends Gu et al., "Networks are Slacking Off: Understanding
Generalization Problem in Image Deraining" (NeurIPS 2023, arXiv 2305.15134).

``ARCHITECTURE.md`` at the repository root is the map: the layers of this package
(imports flow one way, from ``store``, ``rain`` and ``backgrounds`` up to
``experiments``, ``sweeps`` and the notebooks' helpers), the data flow from a rain
preset to a verdict, where a newcomer starts, and the house rules. Import submodules
explicitly, e.g. ``from derain_utils import rain, backgrounds, experiments``.
"""

__version__ = "0.1.0"
