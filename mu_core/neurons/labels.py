"""Automatic neuron labels: score every neuron against every concept of a probe set.

The default labeller, ``selectivity``, needs nothing but the probes. The foundation-model
labeller (``open_clip``, CLIP-Dissect's soft-WPMI) labels with any open_clip checkpoint on disk
and a concept vocabulary (see :mod:`mu_core.neurons.foundation`); it never downloads anything.

>>> sorted(list_labellers())
['open_clip', 'selectivity']
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
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
    "describe_concepts",
    "get_labeller",
    "labels_agree",
    "list_labellers",
    "register_labeller",
    "soft_wpmi",
]


@dataclass(frozen=True)
class NeuronLabels:
    """One label per neuron (``None``: nothing significant), its score and p-value.

    ``labels``: list of length n_neurons; ``scores`` and ``p_values``: ``(n_neurons,)`` arrays
    (p-values are adjusted for multiple testing; ``nan`` for labellers without a test).
    Labellers that rank a whole vocabulary also give, per neuron, its best ``concepts`` as
    ``(name, score)`` pairs, best first, and a one-line ``description`` built from them.
    """

    labels: list[str | None]
    scores: np.ndarray
    p_values: np.ndarray
    concepts: list[list[tuple[str, float]]] | None = None
    descriptions: list[str | None] | None = None


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
    chunk: int = 32,
) -> np.ndarray:
    """CLIP-Dissect's soft weighted pointwise mutual information (Oikarinen & Weng, ICLR 2023).

    ``activations``: ``(n_images, n_neurons)``; ``similarity``: ``(n_images, n_concepts)``
    image-text similarities. ``P(c | x) = softmax(similarity / temperature)`` over concepts; for a
    neuron's top-k images ``B`` with weights falling linearly from ``p_start`` to ``p_end``,
    ``P(c | B) = 1 - prod_x (1 - w_x P(c | x))``; ``score = log P(c | B) - lam * log P(c)`` with
    ``P(c)`` the mean of ``P(c | x)`` over all images. Returns ``(n_neurons, n_concepts)``.
    Neurons are scored ``chunk`` at a time, so memory stays ``top_k x chunk x n_concepts``
    whatever the layer's width.
    """
    sim = np.asarray(similarity, dtype=np.float64) / temperature
    sim -= sim.max(axis=1, keepdims=True)
    p_c_given_x = np.exp(sim)
    p_c_given_x /= p_c_given_x.sum(axis=1, keepdims=True)
    top_k = min(top_k, len(activations))
    top = np.argsort(-np.asarray(activations), axis=0, kind="stable")[:top_k]  # (k, n_neurons)
    weights = np.linspace(p_start, p_end, top_k)[:, None, None]
    log_prior = lam * np.log(np.clip(p_c_given_x.mean(axis=0), 1e-7, None))
    scores = np.empty((top.shape[1], sim.shape[1]))
    for start in range(0, top.shape[1], chunk):
        p_in_top = 1 - np.prod(1 - weights * p_c_given_x[top[:, start:start + chunk]], axis=0)  # (chunk, n_concepts)
        scores[start:start + chunk] = np.log(np.clip(p_in_top, 1e-7, None)) - log_prior
    return scores


def describe_concepts(concepts: list[tuple[str, float]]) -> str | None:
    """A one-line description of a neuron from its best concepts, best first.

    >>> describe_concepts([("sneaker", 2.5), ("sandal", 2.1), ("ankle boot", 1.9)])
    'Responds to sneaker, then sandal and ankle boot.'
    """
    names = [name for name, _ in concepts]
    if not names:
        return None
    if len(names) == 1:
        return f"Responds to {names[0]}."
    rest = names[1:]
    tail = rest[0] if len(rest) == 1 else f"{', '.join(rest[:-1])} and {rest[-1]}"
    return f"Responds to {names[0]}, then {tail}."


@register_labeller
class OpenClipLabeller(Labeller):
    """Label neurons with words from a concept vocabulary, the way CLIP-Dissect does (Oikarinen &
    Weng, ICLR 2023): an open_clip image-text model says how much each probe image shows each
    concept (cosine similarity of the image to ``prompt`` filled with the concept), and
    :func:`soft_wpmi` scores each concept against the neuron's most-activating probes.

    ``checkpoint``: a ``.safetensors`` file on disk; ``model_name``: the open_clip config it was
    trained with (a name bundled with open_clip or a JSON file); ``vocabulary``: a word-list file
    or a list of concepts (default: the list shipped in ``assets/concepts.txt``). Nothing is
    downloaded (see :mod:`mu_core.neurons.foundation`).

    Each neuron gets its ``top_n`` best concepts with their soft-WPMI scores, a one-line
    description built from them, and the best one as its label (``None`` below ``min_score``;
    soft-WPMI has no significance test, so p-values are ``nan``). Deliberate deviations from
    CLIP-Dissect: the probe images are the dataset's test images and rendered patterns (not
    ImageNet / Broden), and with ``add_probe_concepts`` the probe set's own concept names (the
    dataset's class names and the rendered patterns' names) join the vocabulary, so that the two
    labellings can be compared word for word.
    """

    name = "open_clip"

    def __init__(self, checkpoint: str | None = None, model_name: str = "ViT-B-32", vocabulary: str | Path | Sequence[str] | None = None,
                 *, min_score: float = 0.0,
                 prompt: str = "a picture of {}", top_n: int = 5, add_probe_concepts: bool = True, device: str | None = None) -> None:
        from .foundation import DEFAULT_VOCABULARY, read_vocabulary

        if not checkpoint or not Path(checkpoint).is_file():
            raise AuditInputError("The open_clip labeller needs a checkpoint file on disk (checkpoint=PATH); nothing is downloaded.")
        try:
            import open_clip  # noqa: F401
        except ImportError:
            raise AuditInputError("The open_clip labeller needs the open_clip_torch package; install it or use the selectivity labeller.") from None
        if "{}" not in prompt:
            raise AuditInputError("The open_clip prompt needs a {} where the concept goes, e.g. 'a picture of {}'.")
        if not 1 <= int(top_n) <= 50:
            raise AuditInputError("top_n (the concepts kept per neuron) must be between 1 and 50.")
        self.checkpoint, self.model_name, self.min_score, self.prompt, self.device = str(checkpoint), model_name, float(min_score), prompt, device
        self.top_n, self.add_probe_concepts = int(top_n), bool(add_probe_concepts)
        self.vocabulary_file = str(vocabulary) if isinstance(vocabulary, (str, Path)) else ("(list)" if vocabulary else str(DEFAULT_VOCABULARY))
        self._vocabulary = read_vocabulary(vocabulary)
        self._similarity_for: tuple | None = None

    @property
    def vocabulary_size(self) -> int:
        return len(self._vocabulary)

    def concepts_for(self, probes: ProbeSet) -> tuple[str, ...]:
        """The vocabulary, plus the probe set's concept names when ``add_probe_concepts``."""
        if not self.add_probe_concepts:
            return self._vocabulary
        known = {c.casefold() for c in self._vocabulary}
        return self._vocabulary + tuple(n for n in probes.names if n.casefold() not in known)

    def similarity(self, probes: ProbeSet) -> tuple[tuple[str, ...], np.ndarray]:
        """The concepts and the ``(n_probes, n_concepts)`` image-text similarities (kept for the
        last probe set, which every model and layer of one explanation shares)."""
        from .foundation import load_clip

        if self._similarity_for is not None and self._similarity_for[0] is probes:
            return self._similarity_for[1], self._similarity_for[2]
        clip = load_clip(self.checkpoint, self.model_name, self.device)
        concepts = self.concepts_for(probes)
        text = clip.encode_texts(tuple(self.prompt.replace("{}", c) for c in concepts))
        similarity = clip.encode_images(probes.images) @ text.T
        if not np.isfinite(similarity).all():
            raise AuditInputError(f"The open_clip checkpoint {Path(self.checkpoint).name} gives non-finite embeddings; is it damaged?")
        self._similarity_for = (probes, concepts, similarity)
        return concepts, similarity

    def label(self, activations: np.ndarray, probes: ProbeSet) -> NeuronLabels:
        return self.label_from_similarity(activations, *self.similarity(probes))

    def label_from_similarity(self, activations: np.ndarray, concepts: tuple[str, ...], similarity: np.ndarray) -> NeuronLabels:
        """Labels from image-text ``similarity`` ``(n_probes, len(concepts))`` (what :meth:`similarity` gives)."""
        scores = soft_wpmi(activations, similarity)
        n = min(self.top_n, scores.shape[1])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
        best = [[(concepts[c], round(float(scores[i, c]), 4)) for c in row] for i, row in enumerate(order)]
        top = scores[np.arange(len(order)), order[:, 0]]
        labels = [concepts[row[0]] if s >= self.min_score else None for row, s in zip(order, top, strict=True)]
        descriptions = [describe_concepts(b) if label else None for b, label in zip(best, labels, strict=True)]
        return NeuronLabels(labels, top, np.full(len(order), np.nan), best, descriptions)


def labels_agree(label: str | None, concepts: list[tuple[str, float]] | None, other: str | None,
                 other_concepts: list[tuple[str, float]] | None) -> bool | None:
    """Whether two labellings of one neuron agree: both label it, and either label is the other's
    label or among its best concepts (case ignored). ``None`` when either leaves it unlabelled.

    >>> labels_agree("Sneaker", None, "sandal", [("sandal", 2.0), ("sneaker", 1.5)])
    True
    """
    if not label or not other:
        return None
    mine = {label.casefold(), *(c.casefold() for c, _ in concepts or [])}
    theirs = {other.casefold(), *(c.casefold() for c, _ in other_concepts or [])}
    return label.casefold() in theirs or other.casefold() in mine
