"""Linear centred kernel alignment (Kornblith et al., "Similarity of Neural Network
Representations Revisited", ICML 2019).

CKA compares two representations of the same samples; it is invariant to orthogonal
transformations and isotropic scaling of either, so it can compare a model with one retrained
from scratch, whose units do not correspond.

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(50, 8))
>>> round(linear_cka(x, x), 6)
1.0
"""

from __future__ import annotations

import numpy as np

__all__ = ["linear_cka"]


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between ``x`` of shape ``(n_samples, p)`` and ``y`` of shape ``(n_samples, q)``.

    ``CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred features, computed
    through the ``n x n`` Gram matrices when features outnumber samples (same value). Returns
    ``nan`` when either representation is constant.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if len(x) != len(y):
        raise ValueError(f"CKA needs the same samples in both representations, got {len(x)} and {len(y)} rows.")
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    if max(x.shape[1], y.shape[1]) > len(x):
        gram_x, gram_y = x @ x.T, y @ y.T
        cross = float(np.sum(gram_x * gram_y))
        norm = float(np.linalg.norm(gram_x) * np.linalg.norm(gram_y))
    else:
        cross = float(np.linalg.norm(y.T @ x) ** 2)
        norm = float(np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
    return cross / norm if norm > 0 else float("nan")
