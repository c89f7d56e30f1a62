"""Threats lab: unlearning as an attack surface, and backdoors as a threat and a deletion check.

One module per threat behind a registry; each threat runs on a trained model (its weights, its
data and its recorded training recipe) and returns a :class:`ThreatResult`: the settings, the
numbers and a conclusion in plain words, written to ``threat.json``. Request screening (the
defense) is :func:`mu_core.threats.screen.screen_request`.

>>> from mu_core.threats import list_threats
>>> list_threats()[:2]
['targeted_request', 'accuracy_burn']

``run_threat("targeted_request", model, record, params={"targets": 10})`` runs one. The providers'
unlearning runs of a threat are independent jobs of :func:`~mu_core.executor.run_jobs` (this process
by default, a Ray cluster when asked: ``threat --executor ray``); the driver draws the requests
before them and combines their results in order, so the numbers do not depend on where they ran.
"""

from __future__ import annotations

import copy
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .._types import Progress, report
from ..errors import AuditInputError

__all__ = [
    "REQUEST_FILE",
    "THREAT_FILE",
    "Threat",
    "ThreatResult",
    "get_threat",
    "list_threats",
    "register_threat",
    "run_threat",
    "threat_params",
]

#: The file ``threat --out DIR`` writes (and a case keeps per threat under ``threats/``).
THREAT_FILE = "threat.json"
#: A crafted request (arrays ``index``, ``x``, ``y``) written beside it, for ``screen --samples``.
REQUEST_FILE = "request.npz"


@dataclass(frozen=True)
class ThreatResult:
    """What one threat run found.

    ``settings``: the threat's parameters and the model it ran on; ``numbers``: the measured
    values (rates and accuracies in [0, 1]); ``conclusion``: what they mean, in plain words.
    """

    threat: str
    paper: str
    settings: dict
    numbers: dict
    conclusion: str
    seconds: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"threat": self.threat, "paper": self.paper, "settings": self.settings, "numbers": self.numbers,
                "conclusion": self.conclusion, "seconds": round(self.seconds, 3)}

    def write(self, out_dir: str | Path) -> Path:
        """Write ``threat.json`` into ``out_dir`` (and ``request.npz``, the crafted request that
        ``screen --samples`` reads, when the threat crafts one); returns the JSON's path."""
        import io

        import numpy as np

        from ..case import atomic_write_bytes, atomic_write_text

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        request = self.extra.get("request")
        if request is not None:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **request)
            atomic_write_bytes(out / REQUEST_FILE, buffer.getvalue())
        return atomic_write_text(out / THREAT_FILE, json.dumps(self.to_dict(), indent=1, allow_nan=False))


class Threat(ABC):
    """One threat. ``defaults`` documents and types its parameters (``methods`` is a
    comma-separated list of unlearning methods; ``none`` is the provider who does not unlearn)."""

    name: ClassVar[str]
    paper: ClassVar[str]
    summary: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    help: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def run(self, model, record, data, params: dict[str, Any], *, device, progress: Progress | None) -> tuple[dict, str, dict]:
        """Return ``(numbers, conclusion, extra)``; ``extra`` holds arrays or requests for callers
        (not written to ``threat.json``)."""


_REGISTRY: dict[str, type[Threat]] = {}


def register_threat(cls: type[Threat]) -> type[Threat]:
    """Class decorator adding a threat under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def list_threats() -> list[str]:
    return list(_REGISTRY)


def get_threat(name: str) -> Threat:
    if name not in _REGISTRY:
        raise AuditInputError(f"Unknown threat '{name}'; choose one of: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]()


def threat_params(name: str, given: dict[str, Any] | list[str] | None = None) -> dict[str, Any]:
    """The threat's defaults updated by ``given`` (a dict or ``KEY=VALUE`` strings), typed."""
    from ..unlearn import typed_params

    return typed_params(get_threat(name).defaults, given, owner=f"'{name}'", kind="Threat")


def run_threat(
    name: str,
    model,
    record,
    *,
    params: dict[str, Any] | list[str] | None = None,
    dataset=None,
    progress: Progress | None = None,
    device=None,
) -> ThreatResult:
    """Run threat ``name`` against ``model`` (left untouched) and its ``record``.

    Threats that poison the training data retrain with the record's recipe and training indices;
    the others attack ``model`` itself.
    """
    from ..data import DatasetSpec, load_dataset
    from ..device import pick_device

    impl = get_threat(name)
    chosen = threat_params(name, params)
    data = dataset or load_dataset(DatasetSpec.from_dict(record.dataset))
    device = pick_device(device) if not hasattr(device, "type") else device
    model = copy.deepcopy(model).to(device).eval()
    started = time.perf_counter()
    numbers, conclusion, extra = impl.run(model, record, data, chosen, device=device, progress=progress)
    report(progress, 1.0, "Done")
    settings = {**chosen, "model": record.summary(), "dataset": data.spec.name, "device": str(device)}
    return ThreatResult(name, impl.paper, settings, numbers, conclusion, time.perf_counter() - started, extra)


from . import targeted, accuracy_burn, over_unlearning, backdoor, verification_evasion  # noqa: E402,F401,I001  (registers the threats, in this order)
