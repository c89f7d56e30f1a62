"""Reading a stored explanation without torch (for the Neurons page's first view)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import AuditInputError

__all__ = ["array_key", "load_explanation"]


def array_key(*parts: str) -> str:
    """The name of an array in ``neurons.npz``, e.g. ``array_key("stats_mean", "original", "conv1")``."""
    return "__".join(parts)


def load_explanation(folder: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read back ``neurons.json`` and ``neurons.npz`` as written by ``ExplainResult.write``."""
    folder = Path(folder)
    try:
        data = json.loads((folder / "neurons.json").read_text(encoding="utf-8"))
        with np.load(folder / "neurons.npz", allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as exc:
        raise AuditInputError(f"The neuron explanation in {folder} is missing or damaged ({exc}); compute it again.") from None
    return data, arrays
