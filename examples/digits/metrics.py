"""Diversity metrics of generated digits (the FID comes from the reward service).

* class entropy: ``H = -sum_c p_c log p_c`` (nats) of the histogram of predicted classes; a model
  that drops digit classes loses entropy (uniform over 10 classes: log 10 = 2.303).
* coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models"):
  the fraction of real samples whose k-nearest-neighbour ball (radius: distance to the k-th
  nearest other real sample) contains at least one generated sample.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["class_entropy", "coverage"]


def class_entropy(logits: torch.Tensor, classes: int = 10) -> float:
    """Entropy (nats) of the predicted-class histogram of logits (n, classes)."""
    counts = torch.bincount(logits.argmax(dim=1), minlength=classes).double()
    p = counts / counts.sum()
    p = p[p > 0]  # 0 log 0 = 0
    return float(-(p * p.log()).sum())


def coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> float:
    """Coverage of ``real`` (n, d) by ``fake`` (m, d) with k-NN radii of the real samples.

    ``coverage = (1/n) sum_i 1[min_j |y_j - x_i| < r_k(x_i)]``, ``r_k(x_i)`` the distance from
    ``x_i`` to its k-th nearest neighbour among the other real samples.
    """
    real_t = torch.as_tensor(real, dtype=torch.float64)
    fake_t = torch.as_tensor(fake, dtype=torch.float64)
    real_dist = torch.cdist(real_t, real_t)
    # Index k, not k - 1: column 0 of each sorted row is the sample itself (distance 0).
    radii = real_dist.kthvalue(k + 1, dim=1).values
    nearest_fake = torch.cdist(real_t, fake_t).min(dim=1).values
    return float((nearest_fake < radii).double().mean())
