"""A do-nothing "deraining" network for the report-card tests: ``derained = rainy``.

Used as ``python -m derain_utils.book.report tests/_identity_model.py:Identity`` (or
``tests._identity_model:make`` from the repository root). Any honest rain-removal score must
rate it at exactly 0: it removes nothing and damages nothing.
"""
from __future__ import annotations

import torch
from torch import nn


class Identity(nn.Module):
    """Returns its input unchanged; has no parameters."""

    def forward(self, rainy: torch.Tensor) -> torch.Tensor:
        return rainy


def make() -> nn.Module:
    """Zero-argument factory, as ``module:callable`` expects."""
    return Identity()


identity = Identity()
"""A ready instance (``module:identity``)."""
