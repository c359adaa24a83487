"""The latent convention: the encoder's output, then a parameter-free layer norm over the
feature dim before any distance or loss (planner energies, training losses)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def layer_norm(z: Tensor, eps: float = 1e-6) -> Tensor:
    """Parameter-free layer norm over the last dim."""
    return F.layer_norm(z, z.shape[-1:], eps=eps)
