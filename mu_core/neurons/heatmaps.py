"""Heatmap PNGs drawn with Pillow: a grid of images and attribution maps with titles."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

__all__ = ["attribution_rgb", "image_rgb", "png_grid"]

CELL = 96
TITLE = 16


def image_rgb(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] to ``(H, W, 3)`` uint8."""
    image = np.asarray(image, dtype=float)
    if image.shape[0] == 1:
        image = np.repeat(image, 3, axis=0)
    return (np.clip(image.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)


def attribution_rgb(attr: np.ndarray) -> np.ndarray:
    """``(H, W)`` attributions to colours: red positive, blue negative, white zero, scaled by
    the largest absolute value (so maps are comparable within one image, not across images)."""
    attr = np.asarray(attr, dtype=float)
    scale = np.abs(attr).max() or 1.0
    a = np.clip(attr / scale, -1, 1)[..., None]
    white = np.ones((*attr.shape, 3))
    red, blue = np.array([0.84, 0.15, 0.16]), np.array([0.12, 0.47, 0.71])
    rgb = np.where(a >= 0, white + a * (red - 1), white - a * (blue - 1))
    return (rgb * 255).astype(np.uint8)


def png_grid(cells: Sequence[Sequence[np.ndarray]], row_titles: Sequence[str], col_titles: Sequence[str]) -> bytes:
    """A PNG of ``cells[row][col]`` (``(H, W, 3)`` uint8 each) with titles, upscaled without smoothing."""
    from PIL import Image, ImageDraw

    rows, cols = len(cells), max(len(r) for r in cells)
    label_width = 8 * max((len(t) for t in row_titles), default=0) + 8
    canvas = Image.new("RGB", (label_width + cols * (CELL + 4), TITLE + rows * (CELL + 4)), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(col_titles):
        draw.text((label_width + c * (CELL + 4), 2), title[:16], fill="black")
    for r, row in enumerate(cells):
        top = TITLE + r * (CELL + 4)
        draw.text((2, top + CELL // 2 - 6), row_titles[r], fill="black")
        for c, cell in enumerate(row):
            tile = Image.fromarray(cell).resize((CELL, CELL), Image.Resampling.NEAREST)
            canvas.paste(tile, (label_width + c * (CELL + 4), top))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
