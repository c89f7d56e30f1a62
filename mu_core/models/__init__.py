"""Architecture registry and safe model files.

>>> from mu_core.models import build_model
>>> model = build_model("cnn", (1, 8, 8), 10)
>>> sum(p.numel() for p in model.parameters()) > 0
True
"""

from __future__ import annotations

from .._lazy import lazy_exports

# Imported on first use (torch only when a model is built or loaded): ``mu_core.models.io`` reads a
# model's record with numpy alone, and the command line's quick commands start without torch.
__getattr__, __dir__ = lazy_exports(__name__, {
    "ModelRecord": "io", "load_model": "io", "save_model": "io", "sha256_file": "io",
    "build_model": "archs", "list_archs": "archs", "register_arch": "archs",
})

__all__ = [
    "ModelRecord",
    "build_model",
    "list_archs",
    "load_model",
    "register_arch",
    "save_model",
    "sha256_file",
]
