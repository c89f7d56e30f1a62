"""scikit-learn's bundled 8x8 digits: the default dataset, no download needed."""

from __future__ import annotations

import numpy as np
import torch

from . import register_dataset

#: Share of the 1,797 digits held out as the test split (stratified, seed 0).
TEST_SHARE = 0.2


@register_dataset("digits", needs_root=False, description="scikit-learn's bundled 8x8 digits (default)")
def load_digits(_root: object = None):
    """Fixed stratified 80/20 split; both splits keep the bundled file's order."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = (bunch.data.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=TEST_SHARE, stratify=labels, random_state=0
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return (
        torch.from_numpy(images[train_idx]),
        torch.from_numpy(labels[train_idx]),
        torch.from_numpy(images[test_idx]),
        torch.from_numpy(labels[test_idx]),
        tuple(str(name) for name in bunch.target_names),
    )
