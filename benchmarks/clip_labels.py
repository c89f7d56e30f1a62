"""Foundation-model labels (open_clip, CLIP-Dissect's soft-WPMI): how long labelling one layer takes.

Labels the digits ``cnn``'s ``fc1`` (128 neurons) on the Neurons page's probe set (40 test images
per class and 24 renders per pattern: 840 probes) with the shipped vocabulary (plus the probe
names), through the labeller's public path:

* the tiny open_clip model of the tests (random weights, 1.6 M parameters), loaded from a
  ``.safetensors`` checkpoint: the first layer (which embeds the probes and every concept) and a
  second layer (which reuses both embeddings, as the other layers and models of one explanation do),
  and the first layer again after the model is reloaded (a new explanation: the concept embeddings
  come from the disk cache, the probes are embedded anew);
* ViT-B-32 built from open_clip's bundled config with random weights (the compute does not depend
  on the weights; no checkpoint is downloaded): images and prompts are timed on a sample and the
  full embedding time is extrapolated linearly (the batches are independent), next to the estimate
  from the model's FLOPs at the machine's measured matmul speed.

Run from the repository root: ``.venv/bin/python benchmarks/clip_labels.py [--sample-images 64 --sample-texts 256]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# ViT-B/32 at 224 px: about 4.4 GFLOPs per image (the image tower, multiply-adds counted as two);
# the text tower (12 layers, width 512, 77 tokens, 38 M parameters without the token embedding)
# about 2 * 38e6 * 77 = 5.9 GFLOPs per prompt.
VIT_B32_IMAGE_GFLOPS = 4.4
VIT_B32_TEXT_GFLOPS = 5.9


def matmul_gflops(size: int = 1024, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-images", type=int, default=64)
    parser.add_argument("--sample-texts", type=int, default=256)
    args = parser.parse_args()

    import numpy as np
    import open_clip
    import torch

    from mu_core.data import load_dataset
    from mu_core.neurons import build_probe_set, get_labeller, layer_outputs, neuron_activations
    from mu_core.neurons.foundation import ClipModel, _build, clip_model_config, load_clip, read_vocabulary
    from mu_core.train import fit_model
    from tests.clip_fixtures import make_tiny_clip

    data = load_dataset("digits")
    model, _ = fit_model(data, "cnn", device="cpu")
    probes = build_probe_set(data.x_test.numpy(), data.y_test.numpy(), data.class_names, per_class=40, per_visual=24)
    acts = neuron_activations(layer_outputs(model, torch.from_numpy(probes.images), ["fc1"])["fc1"])
    vocabulary = read_vocabulary()
    n_concepts = len(vocabulary) + sum(n.casefold() not in {c.casefold() for c in vocabulary} for n in probes.names)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"{len(probes.concept)} probes, {n_concepts} concepts (vocabulary {len(vocabulary)})")
    gflops = matmul_gflops()
    print(f"float32 matmul: {gflops:.0f} GFLOP/s")

    from mu_core.neurons import foundation

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MU_AUDIT_HOME"] = str(Path(tmp) / "home")  # an empty cache, and none written to the user's home
        checkpoint, config, _ = make_tiny_clip(Path(tmp))
        size_mb = checkpoint.stat().st_size / 1e6
        started = time.perf_counter()
        labeller = get_labeller("open_clip", checkpoint=str(checkpoint), model_name=str(config), device="cpu")
        load_clip(checkpoint, str(config), "cpu")
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        first = labeller.label(acts, probes)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        labeller.label(acts, probes)
        second_s = time.perf_counter() - started
        foundation._LOADED.clear()
        started = time.perf_counter()
        get_labeller("open_clip", checkpoint=str(checkpoint), model_name=str(config), device="cpu").label(acts, probes)
        cached_s = time.perf_counter() - started
    assert all(np.isfinite(first.scores))
    print("\n| model | parameters | checkpoint | load | first layer (embeds probes + concepts) | another layer | "
          "first layer, concepts from the disk cache |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| tiny (tests) | 1.6 M | {size_mb:.1f} MB | {loaded:.2f} s | {first_s:.1f} s | {second_s:.2f} s | {cached_s:.2f} s |")

    config = clip_model_config("ViT-B-32")
    torch.manual_seed(0)
    vit = _build(config).eval()
    parameters = sum(p.numel() for p in vit.parameters())
    clip = ClipModel(vit, open_clip.SimpleTokenizer(), (224, 224), open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD, "cpu",
                     "ViT-B-32", "(random weights)", parameters)
    images = probes.images[: args.sample_images]
    started = time.perf_counter()
    clip.encode_images(images)
    image_s = (time.perf_counter() - started) / len(images)
    texts = tuple(f"a picture of {c}" for c in vocabulary[: args.sample_texts])
    started = time.perf_counter()
    clip.encode_texts(texts)
    text_s = (time.perf_counter() - started) / len(texts)
    measured = image_s * len(probes.concept) + text_s * n_concepts
    flops_estimate = (VIT_B32_IMAGE_GFLOPS * len(probes.concept) + VIT_B32_TEXT_GFLOPS * n_concepts) / gflops
    print(f"\nViT-B-32: {parameters / 1e6:.0f} M parameters ({parameters * 4 / 1e6:.0f} MB in float32, "
          f"{parameters * 2 / 1e6:.0f} MB in float16)")
    print(f"| per image | per prompt | first layer, extrapolated from {len(images)} images + {len(texts)} prompts | "
          "first layer, FLOPs estimate at the matmul speed |")
    print("| ---: | ---: | ---: | ---: |")
    print(f"| {image_s * 1000:.0f} ms | {text_s * 1000:.0f} ms | {measured:.0f} s | {flops_estimate:.0f} s |")


if __name__ == "__main__":
    main()
