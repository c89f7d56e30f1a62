"""Concepts assembled without people, as probe images at the model's input size.

Two families (after Network Dissection, Bau et al. 2017, and CLIP-Dissect, Oikarinen & Weng
2023, which both label a neuron by the concept its strongest responses belong to):

* ``class``: the dataset's class names; a class's probes are its held-out test images.
* ``visual``: procedurally rendered patterns: colours (brightness levels for grey images),
  step edges and thin strokes at four orientations, stripes, checkers, blobs and simple shapes
  (ring, square, triangle, cross). Every probe is drawn with a seeded random position, size,
  phase and (for RGB inputs) colour, so the same seed gives the same probe set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["ProbeSet", "build_probe_set", "class_probes", "render_visual_concepts", "visual_concept_names"]

_ANGLES = {"0°": 0.0, "45°": 45.0, "90°": 90.0, "135°": 135.0}
_RGB_COLOURS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0), "white": (1, 1, 1), "black": (0, 0, 0)}


@dataclass(frozen=True)
class ProbeSet:
    """Probe images with the concept each belongs to.

    ``images``: ``(n, C, H, W)`` float32 in [0, 1]; ``concept``: ``(n,)`` index into ``names``;
    ``families[i]``: the family (``class`` or ``visual``) of ``names[i]``.
    """

    images: np.ndarray
    concept: np.ndarray
    names: tuple[str, ...]
    families: tuple[str, ...]

    def family_of(self, name: str) -> str:
        return self.families[self.names.index(name)]


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = (np.arange(size) + 0.5) / size  # pixel centres in (0, 1)
    return np.meshgrid(coords, coords, indexing="ij")  # rows (y), columns (x)


def _oriented(yy: np.ndarray, xx: np.ndarray, degrees: float) -> np.ndarray:
    """Signed distance along the normal of a line at ``degrees`` (0° = horizontal)."""
    theta = np.deg2rad(degrees)
    return (yy - 0.5) * np.cos(theta) - (xx - 0.5) * np.sin(theta)


def _shape_masks(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, width: float) -> dict[str, Callable[[], np.ndarray]]:
    def centre() -> tuple[float, float, float]:
        r = rng.uniform(0.22, 0.38)
        return rng.uniform(r, 1 - r), rng.uniform(r, 1 - r), r

    def ring() -> np.ndarray:
        cy, cx, r = centre()
        return np.abs(np.hypot(yy - cy, xx - cx) - r) < width

    def square() -> np.ndarray:
        cy, cx, r = centre()
        d = np.maximum(np.abs(yy - cy), np.abs(xx - cx))
        return np.abs(d - r) < width

    def triangle() -> np.ndarray:
        cy, cx, r = centre()
        corners = [(cy - r, cx), (cy + r / 2, cx - 0.87 * r), (cy + r / 2, cx + 0.87 * r)]
        near = np.zeros_like(yy, dtype=bool)
        for (ay, ax), (by, bx) in zip(corners, corners[1:] + corners[:1], strict=True):
            t = np.clip(((yy - ay) * (by - ay) + (xx - ax) * (bx - ax)) / ((by - ay) ** 2 + (bx - ax) ** 2), 0, 1)
            near |= np.hypot(yy - (ay + t * (by - ay)), xx - (ax + t * (bx - ax))) < width
        return near

    def cross() -> np.ndarray:
        cy, cx, r = centre()
        return ((np.abs(yy - cy) < width) & (np.abs(xx - cx) <= r)) | ((np.abs(xx - cx) < width) & (np.abs(yy - cy) <= r))

    return {"ring": ring, "square": square, "triangle": triangle, "cross": cross}


def visual_concept_names(channels: int) -> list[str]:
    """The names of the rendered concepts for images with ``channels`` channels."""
    colours = [f"colour {c}" for c in _RGB_COLOURS] if channels == 3 else ["bright", "dark", "mid-grey"]
    return [
        *colours,
        *(f"edge {a}" for a in _ANGLES),
        *(f"stroke {a}" for a in _ANGLES),
        "stripes horizontal", "stripes vertical", "stripes diagonal",
        "checkers", "blob", "ring", "square", "triangle", "cross",
    ]


def render_visual_concepts(in_shape: tuple[int, int, int], per_concept: int = 24, *, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Render ``per_concept`` images for each visual concept at ``in_shape = (C, H, W)``.

    Returns ``(images, names, concept)`` with images ``(n, C, H, W)`` float32 in [0, 1].
    Patterns are drawn on a square canvas of side ``max(H, W)`` and cropped; strokes are about
    an eighth of the side wide (at least one pixel).
    """
    channels, height, width = (int(d) for d in in_shape)
    side = max(height, width)
    rng = np.random.default_rng(seed)
    yy, xx = _grid(side)
    line = max(1.0 / side, 1.0 / 8) / 2
    shapes = _shape_masks(rng, yy, xx, line)
    names = visual_concept_names(channels)
    images, concept = [], []
    for index, name in enumerate(names):
        for _ in range(per_concept):
            colour = np.ones(channels)
            if name.startswith("colour "):
                pattern = np.ones((side, side))
                colour = np.asarray(_RGB_COLOURS[name.split(" ", 1)[1]], dtype=float)
            elif name in ("bright", "dark", "mid-grey"):
                level = {"bright": rng.uniform(0.8, 1.0), "dark": rng.uniform(0.0, 0.1), "mid-grey": rng.uniform(0.4, 0.6)}[name]
                pattern = np.full((side, side), level)
            elif name.startswith("edge "):
                d = _oriented(yy, xx, _ANGLES[name.split(" ", 1)[1]] + rng.choice([0.0, 180.0]))
                pattern = (d > rng.uniform(-0.2, 0.2)).astype(float)
            elif name.startswith("stroke "):
                d = _oriented(yy, xx, _ANGLES[name.split(" ", 1)[1]])
                pattern = (np.abs(d - rng.uniform(-0.25, 0.25)) < line).astype(float)
            elif name.startswith("stripes "):
                degrees = {"horizontal": 0.0, "vertical": 90.0, "diagonal": rng.choice([45.0, 135.0])}[name.split(" ", 1)[1]]
                period = rng.uniform(2.5, 4.0) / side if side <= 12 else rng.uniform(0.12, 0.3)
                pattern = (np.sin(2 * np.pi * _oriented(yy, xx, degrees) / period + rng.uniform(0, 2 * np.pi)) > 0).astype(float)
            elif name == "checkers":
                cell = rng.uniform(1.5, 2.5) / side if side <= 12 else rng.uniform(0.08, 0.2)
                oy, ox = rng.uniform(0, cell, size=2)
                pattern = ((np.floor((yy + oy) / cell) + np.floor((xx + ox) / cell)) % 2).astype(float)
            elif name == "blob":
                cy, cx = rng.uniform(0.25, 0.75, size=2)
                sigma = rng.uniform(0.08, 0.2)
                pattern = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
            else:
                pattern = shapes[name]().astype(float)
            if channels == 3 and not name.startswith("colour "):
                colour = rng.uniform(0.3, 1.0, size=3)
            image = pattern[None, :height, :width] * colour.reshape(-1, 1, 1)[:channels]
            image = image + rng.normal(0, 0.02, size=image.shape)
            images.append(np.clip(image, 0, 1))
            concept.append(index)
    return np.asarray(images, dtype=np.float32), names, np.asarray(concept, dtype=np.int64)


def class_probes(x_test: np.ndarray, y_test: np.ndarray, class_names: tuple[str, ...], per_class: int = 40, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``per_class`` seeded test images of every class: ``(images, class index)``."""
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in range(len(class_names)):
        members = np.flatnonzero(y_test == cls)
        chosen.append(np.sort(rng.choice(members, size=min(per_class, len(members)), replace=False)))
    picked = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
    return np.asarray(x_test[picked], dtype=np.float32), np.asarray(y_test[picked], dtype=np.int64)


def build_probe_set(
    x_test: np.ndarray,
    y_test: np.ndarray,
    class_names: tuple[str, ...],
    *,
    per_class: int = 40,
    per_visual: int = 24,
    seed: int = 0,
) -> ProbeSet:
    """Both families in one probe set: the classes first, then the rendered visual concepts."""
    class_images, class_index = class_probes(x_test, y_test, class_names, per_class, seed=seed)
    visual_images, visual_names, visual_index = render_visual_concepts(tuple(x_test.shape[1:]), per_visual, seed=seed)
    names = (*class_names, *visual_names)
    families = ("class",) * len(class_names) + ("visual",) * len(visual_names)
    return ProbeSet(
        images=np.concatenate([class_images, visual_images]),
        concept=np.concatenate([class_index, visual_index + len(class_names)]),
        names=tuple(str(n) for n in names),
        families=families,
    )
