"""Automatic neuron labels: score every neuron against every concept of a probe set.

The default labeller, ``selectivity``, needs nothing but the probes. A vision-language
labeller (``open_clip``, after CLIP-Dissect) is available for users who have open_clip and a
checkpoint on disk; it is imported only when asked for and never downloads anything.

>>> sorted(list_labellers())
['open_clip', 'selectivity']
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AuditInputError
from .concepts import ProbeSet

__all__ = [
    "Labeller",
    "NeuronLabels",
    "OpenClipLabeller",
    "SelectivityLabeller",
    "get_labeller",
    "list_labellers",
    "register_labeller",
    "soft_wpmi",
]


@dataclass(frozen=True)
class NeuronLabels:
    """One label per neuron (``None``: nothing significant), its score and p-value.

    ``labels``: list of length n_neurons; ``scores`` and ``p_values``: ``(n_neurons,)`` arrays
    (p-values are adjusted for multiple testing; ``nan`` for labellers without a test).
    """

    labels: list[str | None]
    scores: np.ndarray
    p_values: np.ndarray


class Labeller(ABC):
    """Turns the activations of one layer's neurons on a probe set into labels."""

    name: str = ""

    @abstractmethod
    def label(self, activations: np.ndarray, probes: ProbeSet) -> NeuronLabels:
        """``activations``: ``(n_probes, n_neurons)``, one row per image of ``probes``."""


_REGISTRY: dict[str, type[Labeller]] = {}


def register_labeller(cls: type[Labeller]) -> type[Labeller]:
    """Class decorator adding a labeller under its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def list_labellers() -> list[str]:
    return list(_REGISTRY)


def get_labeller(name: str = "selectivity", **params) -> Labeller:
    """A labeller by name, built with ``params`` (e.g. ``checkpoint=`` for ``open_clip``)."""
    if name not in _REGISTRY:
        raise AuditInputError(f"Unknown labeller '{name}'; choose one of: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name](**params)


def _mann_whitney(inside: np.ndarray, outside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron: AUC = P(a random ``inside`` activation exceeds an ``outside`` one) and the
    one-sided Mann-Whitney p-value of "inside is larger" (normal approximation, tie-corrected)."""
    from scipy.stats import mannwhitneyu

    result = mannwhitneyu(inside, outside, alternative="greater", axis=0, method="asymptotic")
    auc = np.asarray(result.statistic, dtype=float) / (len(inside) * len(outside))
    p = np.asarray(result.pvalue, dtype=float)
    return auc, np.where(np.isnan(p), 1.0, p)


@register_labeller
class SelectivityLabeller(Labeller):
    """Label a neuron with the concept whose probes it responds to more than to the others.

    A class's ``score`` is the AUC of the neuron's activations on that class's probes against the
    other classes' probes. A rendered pattern's ``score`` is ``min(AUC_visual, AUC_class)``: it
    must beat the other patterns *and* the real images (an intersection-union test, whose p-value
    is the larger of the two). p-values are one-sided Mann-Whitney, adjusted by Benjamini-Hochberg
    over every (neuron, concept) pair of the layer. A concept qualifies with adjusted
    ``p <= alpha`` and ``score >= min_score``. Class names come first: a neuron gets its best
    qualifying class, else its best qualifying pattern, else no label. (Rendered patterns are far
    from the training data, so they can drive a unit harder than any real image, its own class
    included; comparing classes only among real images keeps the dataset's own concepts from
    being crowded out by such out-of-distribution extremes.)

    This replaces CLIP-Dissect's soft-WPMI (which needs an image-text model to say how much each
    probe shows each concept): here each probe belongs to exactly one concept by construction,
    so a rank test of "concept probes vs the rest" is the natural selectivity, and it comes with
    a significance level. Network Dissection's IoU needs pixel-level concept masks we do not have.
    """

    name = "selectivity"

    def __init__(self, alpha: float = 0.01, min_score: float = 0.8) -> None:
        self.alpha = float(alpha)
        self.min_score = float(min_score)

    def label(self, activations: np.ndarray, probes: ProbeSet) -> NeuronLabels:
        from scipy.stats import false_discovery_control

        activations = np.asarray(activations, dtype=np.float64)
        n_neurons = activations.shape[1]
        families = np.asarray([probes.families[c] for c in probes.concept])
        scores = np.zeros((len(probes.names), n_neurons))
        p_values = np.ones((len(probes.names), n_neurons))
        for index, family in enumerate(probes.families):
            inside = probes.concept == index
            if inside.sum() < 2:
                continue
            references = [(families == family) & ~inside] + ([families != family] if family != "class" else [])
            parts = [_mann_whitney(activations[inside], activations[outside]) for outside in references if outside.sum() >= 2]
            if parts:
                scores[index] = np.min([auc for auc, _ in parts], axis=0)
                p_values[index] = np.max([p for _, p in parts], axis=0)
        adjusted = false_discovery_control(p_values.ravel(), method="bh").reshape(p_values.shape)
        eligible = (adjusted <= self.alpha) & (scores >= self.min_score)
        is_class = np.asarray([f == "class" for f in probes.families])[:, None]
        class_first = eligible & (is_class | ~(eligible & is_class).any(axis=0, keepdims=True))
        masked = np.where(class_first, scores, -np.inf)
        best = masked.argmax(axis=0)
        has = np.isfinite(masked.max(axis=0))
        columns = np.arange(n_neurons)
        labels = [probes.names[b] if ok else None for b, ok in zip(best, has, strict=True)]
        best_score = np.where(has, scores[best, columns], scores.max(axis=0))
        best_p = np.where(has, adjusted[best, columns], adjusted.min(axis=0))
        return NeuronLabels(labels, best_score, best_p)


def soft_wpmi(
    activations: np.ndarray,
    similarity: np.ndarray,
    *,
    top_k: int = 20,
    lam: float = 1.0,
    temperature: float = 0.1,
    p_start: float = 0.998,
    p_end: float = 0.97,
) -> np.ndarray:
    """CLIP-Dissect's soft weighted pointwise mutual information (Oikarinen & Weng, ICLR 2023).

    ``activations``: ``(n_images, n_neurons)``; ``similarity``: ``(n_images, n_concepts)``
    image-text similarities. ``P(c | x) = softmax(similarity / temperature)`` over concepts; for a
    neuron's top-k images ``B`` with weights falling linearly from ``p_start`` to ``p_end``,
    ``P(c | B) = 1 - prod_x (1 - w_x P(c | x))``; ``score = log P(c | B) - lam * log P(c)`` with
    ``P(c)`` the mean of ``P(c | x)`` over all images. Returns ``(n_neurons, n_concepts)``.
    """
    sim = np.asarray(similarity, dtype=np.float64) / temperature
    sim -= sim.max(axis=1, keepdims=True)
    p_c_given_x = np.exp(sim)
    p_c_given_x /= p_c_given_x.sum(axis=1, keepdims=True)
    top_k = min(top_k, len(activations))
    top = np.argsort(-np.asarray(activations), axis=0)[:top_k]  # (k, n_neurons)
    weights = np.linspace(p_start, p_end, top_k)[:, None, None]
    p_in_top = 1 - np.prod(1 - weights * p_c_given_x[top], axis=0)  # (n_neurons, n_concepts)
    prior = p_c_given_x.mean(axis=0)
    return np.log(np.clip(p_in_top, 1e-7, None)) - lam * np.log(np.clip(prior, 1e-7, None))


@register_labeller
class OpenClipLabeller(Labeller):
    """Label with a vision-language model from open_clip and a checkpoint file on disk, scored by
    :func:`soft_wpmi` (CLIP-Dissect). Optional: open_clip is not a dependency of MU Audit, and
    nothing is downloaded: ``checkpoint`` must be a local file. Every neuron gets its best
    concept (soft-WPMI has no significance test); ``min_score`` leaves weak ones unlabelled.
    """

    name = "open_clip"

    def __init__(self, checkpoint: str | None = None, model_name: str = "ViT-B-32", min_score: float = 0.0,
                 prompt: str = "a picture of {}", device: str = "cpu") -> None:
        if not checkpoint or not Path(checkpoint).is_file():
            raise AuditInputError("The open_clip labeller needs a checkpoint file on disk (checkpoint=PATH); nothing is downloaded.")
        try:
            import open_clip  # noqa: F401
        except ImportError:
            raise AuditInputError("The open_clip labeller needs the open_clip_torch package; install it or use the selectivity labeller.") from None
        self.checkpoint, self.model_name, self.min_score, self.prompt, self.device = checkpoint, model_name, min_score, prompt, device
        self._model = None

    def _similarity(self, probes: ProbeSet) -> np.ndarray:
        import open_clip
        import torch
        import torch.nn.functional as F

        if self._model is None:
            self._model, _, self._preprocess = open_clip.create_model_and_transforms(self.model_name, pretrained=self.checkpoint, device=self.device)
            self._tokenizer = open_clip.get_tokenizer(self.model_name)
            self._model.eval()
        images = torch.from_numpy(probes.images)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        size = self._model.visual.image_size
        size = size if isinstance(size, tuple) else (size, size)
        mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
        images = (F.interpolate(images, size=size, mode="bilinear", align_corners=False) - mean) / std
        with torch.no_grad():
            image_features = F.normalize(self._model.encode_image(images.to(self.device)).float(), dim=-1)
            text = self._tokenizer([self.prompt.format(n) for n in probes.names]).to(self.device)
            text_features = F.normalize(self._model.encode_text(text).float(), dim=-1)
        return (image_features @ text_features.T).cpu().numpy()

    def label(self, activations: np.ndarray, probes: ProbeSet) -> NeuronLabels:
        scores = soft_wpmi(activations, self._similarity(probes))
        best = scores.argmax(axis=1)
        top = scores[np.arange(len(best)), best]
        labels = [probes.names[b] if s >= self.min_score else None for b, s in zip(best, top, strict=True)]
        return NeuronLabels(labels, top, np.full(len(best), np.nan))
