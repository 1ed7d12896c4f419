"""The networks: deraining architectures, and how they are trained and applied.

``models`` (ResNet, UNet, SwinIR-style networks predicting the rain or the background) and
``training`` (pairs made on the fly from ``synth``, deterministic and resumable training, the fast
bf16/channels-last path, :func:`~derain_utils.nets.training.predict`).
"""
