"""What is measured: of an image, of a set of images, of anything that derains, and of a trained model.

Image measures (``metrics``: PSNR/SSIM and the decoupled metrics; ``metric_table``: one table of
every metric's name, unit and direction), the one scorer (``scoring``), measures of image sets
(``complexity``; ``rainmeter``: the rain of a paired set against the presets; ``realscores``: scores
on real data), the fixed-filter baselines and their frontier (``baselines``), the primary outcome of
every model (``outcome``), what a model learned (``probes``) and how it learned (``dynamics``).
The scorer and the baselines take any module that maps a rainy batch to a derained one: a trained
network or a fixed filter.
"""
