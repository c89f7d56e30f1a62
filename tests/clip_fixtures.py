"""A tiny open_clip model for the foundation-model labeller's tests, and a guard that fails any
network access: the labeller must run from files on disk only."""

from __future__ import annotations

import json
import socket
from pathlib import Path

#: A CLIP small enough to build in a blink (1.6 M parameters, most of them the token embedding
#: that open_clip's bundled 49,408-token BPE vocabulary needs); random weights, no pretraining.
TINY_CLIP = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}

#: A short concept vocabulary (the default list has thousands; a short one keeps the tests fast).
VOCABULARY = ("dog", "cat", "wheel", "stripes", "red", "circle", "grass", "sky", "shoe", "letter", "number", "curve",
              "zigzag", "checkerboard", "face", "bright", "dark", "loop", "boot", "bag")


def make_tiny_clip(folder: Path, *, seed: int = 0, config: dict | None = None) -> tuple[Path, Path, Path]:
    """Build the tiny CLIP without pretrained weights and save it: ``(checkpoint.safetensors,
    config.json, vocabulary.txt)`` in ``folder``."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = config or TINY_CLIP
    torch.manual_seed(seed)
    model = open_clip.CLIP(**config)
    checkpoint, config_file, vocabulary = folder / "tiny_clip.safetensors", folder / "tiny_clip.json", folder / "concepts.txt"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    config_file.write_text(json.dumps(config))
    vocabulary.write_text("# test concepts\n" + "\n".join(VOCABULARY) + "\n")
    return checkpoint, config_file, vocabulary


class NetworkAttempt(AssertionError):
    pass


def block_network(monkeypatch) -> list[str]:
    """Make every socket connection fail (and record it), and put the Hugging Face hub offline.
    Returns the list of attempted addresses, which a test asserts stays empty (a library that
    swallowed the error still shows up there)."""
    attempts: list[str] = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(repr(address))
        raise NetworkAttempt(f"network access to {address!r} during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return attempts


#: The same guard for a ``python -c`` child process: prints NETWORK ATTEMPT and fails the call.
GUARD_SOURCE = """
import socket, sys
def _refuse(self, address, *args, **kwargs):
    print(f"NETWORK ATTEMPT {address!r}", file=sys.stderr)
    raise OSError("network access during an offline run")
socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
"""
