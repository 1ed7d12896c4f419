"""What goes in: rain as a distribution, the clean backgrounds, and the real image sets.

``rain`` (the additive rain layer R, its presets and exact synthesis), ``perspective`` (a rain scene
unlike the training rain), ``procedural`` (generated backgrounds: the complexity ladder and dead
leaves), ``backgrounds`` (every source of clean images and the leak-free train/test split), ``data``
(``DERAIN_DATA`` and the checksummed registry of public sets) and ``realsets`` (paired benchmarks and
real rainy photographs). Nothing here knows about networks.
"""
