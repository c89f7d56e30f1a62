"""Architecture registry and safe model files.

>>> from mu_core.models import build_model
>>> model = build_model("cnn", (1, 8, 8), 10)
>>> sum(p.numel() for p in model.parameters()) > 0
True
"""

from __future__ import annotations

from . import ddpm  # noqa: F401  (registers the ddpm architecture)
from .archs import build_model, list_archs, register_arch
from .io import ModelRecord, load_model, save_model, sha256_file

__all__ = [
    "ModelRecord",
    "build_model",
    "list_archs",
    "load_model",
    "register_arch",
    "save_model",
    "sha256_file",
]
