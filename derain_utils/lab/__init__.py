"""Making and caching models: one config makes one model, profiles size them, designs group them.

``experiments`` (``ExperimentConfig``, its held-out test inputs, ``run`` and the verified cache),
``sweeps`` (many configs into one tidy table, inline or in processes), ``profiles`` (the smoke, quick
and paper sizes), ``designs`` (each notebook's grid of models, shared between notebooks), ``bench``
(how fast a training step is) and ``workload`` (what whole profiles cost, on a GPU or the CPU).
"""
