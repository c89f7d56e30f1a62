"""A foundation model for neuron labels, entirely offline: an ``open_clip`` model built from its
config, weights from a ``.safetensors`` checkpoint on disk, and a concept vocabulary (a word list).

This is the image-text model CLIP-Dissect (Oikarinen & Weng, *CLIP-Dissect: Automatic Description
of Neuron Representations in Deep Vision Networks*, ICLR 2023) uses to say how much each probe
image shows each concept; :class:`mu_core.neurons.labels.OpenClipLabeller` scores neurons with it.

Nothing is ever downloaded. The model is built from a config that ships inside ``open_clip`` (by
name, e.g. ``ViT-B-32``) or from a JSON file (a bare model config, or the ``open_clip_config.json``
of a Hugging Face model folder, whose ``model_cfg`` is used), with ``pretrained`` weights switched
off for timm vision towers; the weights come from the checkpoint file only; the tokenizer is
open_clip's byte-pair encoder, whose vocabulary ships inside the package. Text towers and
tokenizers that live on the Hugging Face hub (``hf_model_name``, ``hf_tokenizer_name``: SigLIP,
multilingual models) are refused with a sentence rather than fetched. Deliberate deviations from
open_clip's own loader: only ``.safetensors`` files are read (a ``.pt``/``.bin`` file would have to
be unpickled), and the model's size is checked on the ``meta`` device before any memory is taken.

>>> read_vocabulary(["dog", "Dog", " cat ", "# a comment", ""])
('dog', 'cat')
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AuditInputError

__all__ = [
    "DEFAULT_VOCABULARY",
    "ClipModel",
    "agreement_lines",
    "agreement_totals",
    "clip_model_config",
    "configured_clip",
    "labeller_options",
    "load_clip",
    "read_vocabulary",
]

#: The concept list that ships with MU Audit (see the header of the file for how it was made).
DEFAULT_VOCABULARY = Path(__file__).resolve().parents[2] / "assets" / "concepts.txt"
MAX_VOCABULARY = 100_000
MAX_VOCABULARY_BYTES = 8 * 1024**2
MAX_CONCEPT_CHARS = 100
MAX_CONFIG_BYTES = 1024**2
#: The largest model (parameters x 4 bytes) that is built; ViT-bigG-14 is about 10 GB in float32.
MAX_MODEL_BYTES = 12 * 1024**3
_IMAGE_BATCH = 64
_TEXT_BATCH = 256


def read_vocabulary(source: str | Path | Iterable[str] | None = None) -> tuple[str, ...]:
    """Concepts, one a line, from a file (default: :data:`DEFAULT_VOCABULARY`) or a list of strings.

    Blank lines and lines starting with ``#`` are skipped, surrounding whitespace is stripped, and
    repeats (ignoring case) are dropped, keeping the first spelling and the order.
    """
    if source is None or isinstance(source, (str, Path)):
        path = Path(source) if source is not None else DEFAULT_VOCABULARY
        if not path.is_file():
            raise AuditInputError(f"The concept vocabulary {path} is not a file; give a text file with one concept a line.")
        if path.stat().st_size > MAX_VOCABULARY_BYTES:
            raise AuditInputError(f"The concept vocabulary {path} is larger than {MAX_VOCABULARY_BYTES // 1024**2} MiB; give a shorter word list.")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise AuditInputError(f"The concept vocabulary {path} is not UTF-8 text.") from None
    else:
        lines = [str(line) for line in source]
    concepts: dict[str, str] = {}
    for line in lines:
        word = " ".join(line.split())
        if not word or word.startswith("#"):
            continue
        if len(word) > MAX_CONCEPT_CHARS:
            raise AuditInputError(f"The concept '{word[:40]}…' is longer than {MAX_CONCEPT_CHARS} characters; give short words or phrases.")
        concepts.setdefault(word.casefold(), word)
        if len(concepts) > MAX_VOCABULARY:
            raise AuditInputError(f"The concept vocabulary has more than {MAX_VOCABULARY:,} concepts; give a shorter list.")
    if not concepts:
        raise AuditInputError("The concept vocabulary is empty; give at least one concept.")
    return tuple(concepts.values())


def clip_model_config(model: str) -> dict:
    """The open_clip model config for ``model``: a config name bundled with open_clip (see
    ``open_clip.list_models()``) or a JSON file (a model config, or an ``open_clip_config.json``
    holding one under ``model_cfg``)."""
    import open_clip

    if model.lower().endswith(".json"):
        path = Path(model)
        if not path.is_file():
            raise AuditInputError(f"The open_clip model config {path} is not a file.")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise AuditInputError(f"The open_clip model config {path} is larger than 1 MiB; is it really a config?")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AuditInputError(f"The open_clip model config {path} is not valid JSON ({exc}).") from None
        config = config.get("model_cfg", config) if isinstance(config, dict) else config
    else:
        config = open_clip.get_model_config(model)
        if config is None:
            raise AuditInputError(f"open_clip has no model config named '{model}'; give a name such as ViT-B-32 or a JSON config file.")
    if not (isinstance(config, dict) and isinstance(config.get("vision_cfg"), dict) and isinstance(config.get("text_cfg"), dict)
            and "embed_dim" in config):
        raise AuditInputError(f"The open_clip model config '{model}' has no embed_dim, vision_cfg and text_cfg.")
    text_cfg = config["text_cfg"]
    if "hf_model_name" in text_cfg or "hf_tokenizer_name" in text_cfg:
        raise AuditInputError(f"The open_clip model '{model}' needs a text model or tokenizer from the Hugging Face hub, which is "
                              "never downloaded; use a model with open_clip's own text tower (e.g. ViT-B-32).")
    return copy.deepcopy(config)


def _build(config: dict):
    """An open_clip model from ``config``, with no pretrained weights of any tower."""
    import open_clip

    config = copy.deepcopy(config)
    if "timm_model_name" in config["vision_cfg"]:
        config["vision_cfg"]["timm_model_pretrained"] = False
    custom_text = bool(config.pop("custom_text", False))
    config.pop("preprocess_cfg", None)
    cls = open_clip.CoCa if "multimodal_cfg" in config else open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    return cls(**config)


@dataclass
class ClipModel:
    """A loaded open_clip model with what labelling needs: its tokenizer and image preprocessing."""

    model: object
    tokenizer: object
    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: str
    name: str
    checkpoint: str
    parameters: int
    cache_key: str = ""
    _text_cache: dict = field(default_factory=dict, repr=False)

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """L2-normalised image embeddings of ``images``, ``(n, C, H, W)`` floats in [0, 1] (grey
        images are repeated over three channels, then resized to the model's input size)."""
        import torch
        import torch.nn.functional as F

        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        out = []
        with torch.no_grad():
            for start in range(0, len(images), _IMAGE_BATCH):
                x = torch.from_numpy(np.ascontiguousarray(images[start:start + _IMAGE_BATCH], dtype=np.float32))
                if x.shape[1] == 1:
                    x = x.expand(-1, 3, -1, -1)
                elif x.shape[1] != 3:
                    raise AuditInputError(f"open_clip needs grey or RGB images, not {x.shape[1]} channels.")
                x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False, antialias=True)
                x = ((x - mean) / std).to(self.device)
                out.append(F.normalize(self.model.encode_image(x).float(), dim=-1).cpu())
        return torch.cat(out).numpy()

    def encode_texts(self, texts: tuple[str, ...]) -> np.ndarray:
        """L2-normalised text embeddings. The last few lists asked for are kept in memory, and
        every list on disk under ``MU_AUDIT_HOME/cache/clip_text/`` (keyed by the checkpoint's
        path, size and modification time, the model config and the texts), so a vocabulary is
        embedded once per checkpoint, not once per explanation."""
        import torch
        import torch.nn.functional as F

        from ..case import atomic_write_bytes, audit_home

        if texts in self._text_cache:
            return self._text_cache[texts]
        digest = hashlib.sha256("\n".join((self.cache_key, *texts)).encode("utf-8")).hexdigest()
        cached = audit_home() / "cache" / "clip_text" / f"{digest}.npy"
        features = None
        if self.cache_key and cached.is_file():
            try:
                features = np.load(cached, allow_pickle=False)
            except (OSError, ValueError):
                features = None
            if features is not None and not (features.ndim == 2 and len(features) == len(texts) and np.isfinite(features).all()):
                features = None
        if features is None:
            out = []
            with torch.no_grad():
                for start in range(0, len(texts), _TEXT_BATCH):
                    tokens = self.tokenizer(list(texts[start:start + _TEXT_BATCH])).to(self.device)
                    out.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu())
            features = torch.cat(out).numpy()
            if self.cache_key:
                buffer = io.BytesIO()
                np.save(buffer, features, allow_pickle=False)
                atomic_write_bytes(cached, buffer.getvalue())
        while len(self._text_cache) >= 4:
            self._text_cache.pop(next(iter(self._text_cache)))
        self._text_cache[texts] = features
        return features


_LOCK = threading.Lock()
_LOADED: dict[tuple, ClipModel] = {}


def load_clip(checkpoint: str | Path, model: str = "ViT-B-32", device: str | None = None) -> ClipModel:
    """The open_clip model ``model`` (a bundled config name or a JSON config file) with the weights
    of the ``.safetensors`` file ``checkpoint``. The last model loaded is kept in memory (keyed by
    the file's path, size and modification time), so labelling several models reuses it."""
    import torch

    from ..device import pick_device

    path = Path(checkpoint)
    if not path.is_file():
        raise AuditInputError(f"The open_clip checkpoint {path} is not a file on disk; nothing is downloaded.")
    if path.suffix.lower() != ".safetensors":
        raise AuditInputError(f"The open_clip checkpoint {path.name} is not a .safetensors file; other formats would have to be "
                              "unpickled, so convert it to safetensors first.")
    try:
        import open_clip
    except ImportError:
        raise AuditInputError("The open_clip labeller needs the open_clip_torch package (pip install -r requirements.txt).") from None
    dev = str(pick_device(device))
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, model, dev)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        config = clip_model_config(model)
        try:
            with torch.device("meta"):
                shape_only = _build(config)
        except (TypeError, ValueError, KeyError, AssertionError, RuntimeError) as exc:
            raise AuditInputError(f"The open_clip model config '{model}' cannot be built ({exc}).") from None
        parameters = sum(p.numel() for p in shape_only.parameters())
        if parameters * 4 > MAX_MODEL_BYTES:
            raise AuditInputError(f"The open_clip model '{model}' has {parameters / 1e9:.1f} billion parameters, more than "
                                  f"{MAX_MODEL_BYTES // 1024**3} GiB in float32; use a smaller model.")
        if not parameters * 2 * 0.9 <= stat.st_size <= parameters * 4 + 16 * 1024**2:
            raise AuditInputError(f"The checkpoint {path.name} ({stat.st_size / 1e6:.0f} MB) cannot hold the '{model}' model "
                                  f"({parameters / 1e6:.0f} M parameters: {parameters * 2 / 1e6:.0f} MB in 16-bit floats, "
                                  f"{parameters * 4 / 1e6:.0f} MB in 32-bit); check the model config.")
        del shape_only
        clip = _build(config)
        try:
            open_clip.load_checkpoint(clip, str(path), strict=True)
        except Exception as exc:  # safetensors' own errors, shape or key mismatches
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AuditInputError(f"The checkpoint {path.name} does not hold a '{model}' open_clip model ({first[:200]}).") from None
        clip = clip.to(dev).eval()
        text_cfg = config["text_cfg"]
        tokenizer = open_clip.SimpleTokenizer(context_length=text_cfg.get("context_length", 77), **text_cfg.get("tokenizer_kwargs", {}))
        size = config["vision_cfg"].get("image_size", 224)
        size = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
        preprocess = config.get("preprocess_cfg", {})
        cache_key = json.dumps([*key[:3], config, open_clip.__version__], sort_keys=True)
        loaded = ClipModel(clip, tokenizer, size, tuple(preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN)),
                           tuple(preprocess.get("std", open_clip.OPENAI_DATASET_STD)), dev, model, str(path), parameters, cache_key)
        _LOADED.clear()
        _LOADED[key] = loaded
        return loaded


def labeller_options(checkpoint: str | None, model: str | None = None, vocabulary: str | None = None,
                     device: str | None = None) -> dict:
    """The keyword arguments of the ``open_clip`` labeller from the CLI's or the page's settings."""
    if not checkpoint:
        raise AuditInputError("The open_clip labeller needs a checkpoint file on disk: give --clip-checkpoint FILE.safetensors.")
    return {"checkpoint": checkpoint, "model_name": model or "ViT-B-32", "vocabulary": vocabulary or None, "device": device}


def configured_clip() -> dict | None:
    """The foundation-model labeller the app's operator configured, from the environment:
    ``MU_AUDIT_CLIP_CHECKPOINT`` (a ``.safetensors`` file; unset: none), ``MU_AUDIT_CLIP_MODEL``
    (default ``ViT-B-32``) and ``MU_AUDIT_CLIP_VOCABULARY`` (default: the shipped list). Web users
    never type server paths; the settings are the operator's."""
    checkpoint = os.environ.get("MU_AUDIT_CLIP_CHECKPOINT", "").strip()
    if not checkpoint:
        return None
    return labeller_options(checkpoint, os.environ.get("MU_AUDIT_CLIP_MODEL", "").strip() or None,
                            os.environ.get("MU_AUDIT_CLIP_VOCABULARY", "").strip() or None)


def agreement_totals(data: dict) -> dict[str, dict]:
    """Per model, the ``label_agreement`` of ``neurons.json`` summed over the explained layers."""
    totals = {}
    for role, layers in (data.get("label_agreement") or {}).items():
        both = sum(v["labelled_by_both"] for v in layers.values())
        agree = sum(v["agree"] for v in layers.values())
        totals[role] = {"labelled_by_both": both, "agree": agree, "share": round(agree / both, 4) if both else None}
    return totals


def agreement_lines(data: dict) -> list[str]:
    """One printed line per model: where the labeller and the comparison labeller agree."""
    pair = f"{data['labeller']} vs {data['compared_labeller']}"
    return [f"labels agree ({pair}), {role}: {t['agree']} of {t['labelled_by_both']} neurons labelled by both"
            + (f" ({t['share']:.0%})" if t["share"] is not None else "") for role, t in agreement_totals(data).items()]
