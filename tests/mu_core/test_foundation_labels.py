"""The foundation-model labeller (open_clip, CLIP-Dissect's soft-WPMI), end to end and offline:
a tiny open_clip model built here without pretrained weights, saved as a checkpoint, then used by
``python -m mu_core explain --labeller open_clip`` with the network unreachable."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mu_core.errors import AuditInputError
from tests.clip_fixtures import GUARD_SOURCE, VOCABULARY, NetworkAttempt, block_network, make_tiny_clip

pytest.importorskip("open_clip")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_tiny_clip(tmp_path_factory.mktemp("clip"))


def test_the_network_guard_refuses_and_records_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    attempts = block_network(monkeypatch)
    with pytest.raises(NetworkAttempt):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    assert attempts and os.environ["HF_HUB_OFFLINE"] == "1"


def test_the_default_vocabulary_ships_a_few_thousand_visual_concepts() -> None:
    from mu_core.neurons.foundation import DEFAULT_VOCABULARY, read_vocabulary

    concepts = read_vocabulary()
    assert len(concepts) >= 2000
    assert len({c.casefold() for c in concepts}) == len(concepts)
    assert {"dog", "striped", "red", "circle", "wheel", "beach", "wood", "sneaker", "goldfish"} <= set(concepts)
    assert DEFAULT_VOCABULARY.read_text().startswith("#")  # the header says how the list was made


def test_a_vocabulary_is_bounded_and_not_empty(tmp_path: Path) -> None:
    from mu_core.neurons.foundation import read_vocabulary

    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(AuditInputError, match="empty"):
        read_vocabulary(tmp_path / "empty.txt")
    with pytest.raises(AuditInputError, match="longer than"):
        read_vocabulary(["dog", "x" * 101])
    with pytest.raises(AuditInputError, match="not a file"):
        read_vocabulary(tmp_path / "missing.txt")


def test_labels_agree_when_one_label_is_among_the_others_best_concepts() -> None:
    from mu_core.neurons.labels import labels_agree

    assert labels_agree("3", None, "3", [("3", 1.0)]) is True
    assert labels_agree("Trouser", None, "jeans", [("jeans", 2.0), ("trouser", 1.8)]) is True
    assert labels_agree("Trouser", None, "sandal", [("sandal", 2.0), ("sneaker", 1.8)]) is False
    assert labels_agree(None, None, "sandal", [("sandal", 2.0)]) is None


def test_the_tiny_clip_sees_the_probes_and_the_vocabulary_offline(tiny_clip, digits, monkeypatch: pytest.MonkeyPatch) -> None:
    from mu_core.neurons import build_probe_set, get_labeller

    attempts = block_network(monkeypatch)
    checkpoint, config, vocabulary = tiny_clip
    probes = build_probe_set(digits.x_test.numpy(), digits.y_test.numpy(), digits.class_names, per_class=10, per_visual=4)
    labeller = get_labeller("open_clip", checkpoint=str(checkpoint), model_name=str(config), vocabulary=str(vocabulary))
    concepts, similarity = labeller.similarity(probes)
    # the vocabulary first, then the probe set's own names (the dataset's classes, the rendered patterns)
    assert concepts[: len(VOCABULARY)] == VOCABULARY and set(probes.names) <= set(concepts)
    assert similarity.shape == (len(probes.concept), len(concepts)) and np.isfinite(similarity).all()
    assert np.abs(similarity).max() <= 1 + 1e-5  # cosine similarities
    assert similarity.std(axis=0).min() > 1e-4  # every concept's similarity varies over the images: a real forward pass
    result = labeller.label(np.random.default_rng(0).normal(size=(len(probes.concept), 7)), probes)
    assert all(label in concepts for label in result.labels) and np.isfinite(result.scores).all()
    assert attempts == []


def test_a_vocabulary_is_embedded_once_per_checkpoint(tiny_clip, audit_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mu_core.neurons import foundation

    checkpoint, config, _ = tiny_clip
    texts = tuple(f"a picture of {c}" for c in VOCABULARY)
    first = foundation.load_clip(checkpoint, str(config), "cpu").encode_texts(texts)
    assert len(list((audit_home / "cache" / "clip_text").glob("*.npy"))) == 1
    foundation._LOADED.clear()  # a fresh process, as far as the model goes
    again = foundation.load_clip(checkpoint, str(config), "cpu")

    def refuse(*args, **kwargs):
        raise AssertionError("the cached embeddings were not used")

    monkeypatch.setattr(again.model, "encode_text", refuse)
    np.testing.assert_array_equal(again.encode_texts(texts), first)
    with pytest.raises(AssertionError, match="not used"):
        again.encode_texts((*texts, "one more"))  # another vocabulary is embedded anew


def test_each_neuron_gets_its_best_concepts_with_scores_and_a_description(tiny_clip) -> None:
    """With an image-text similarity where each image shows one concept, a neuron firing on the
    images of a concept gets it first, with scores best first and a one-line description."""
    from mu_core.neurons import get_labeller

    checkpoint, config, vocabulary = tiny_clip
    labeller = get_labeller("open_clip", checkpoint=str(checkpoint), model_name=str(config), vocabulary=str(vocabulary), top_n=3)
    concepts = ("sneaker", "sandal", "ankle boot", "bag")
    shown = np.repeat(np.arange(4), 25)
    rng = np.random.default_rng(0)
    similarity = 0.2 + 0.1 * np.eye(4)[shown] + rng.normal(0, 0.005, size=(100, 4))
    activations = rng.normal(0, 0.1, size=(100, 3))
    activations[shown == 2, 0] += 2  # neuron 0: ankle boots
    activations[shown == 0, 1] += 2  # neuron 1: sneakers
    activations[np.isin(shown, [0, 1]), 2] += 2  # neuron 2: sneakers and sandals
    result = labeller.label_from_similarity(activations, concepts, similarity)
    assert result.labels[:2] == ["ankle boot", "sneaker"] and result.labels[2] in ("sneaker", "sandal")
    assert {name for name, _ in result.concepts[2][:2]} == {"sneaker", "sandal"}
    for best in result.concepts:
        assert [s for _, s in best] == sorted((s for _, s in best), reverse=True) and len(best) == 3
    assert result.descriptions[0] == f"Responds to ankle boot, then {result.concepts[0][1][0]} and {result.concepts[0][2][0]}."
    strict = get_labeller("open_clip", checkpoint=str(checkpoint), model_name=str(config), vocabulary=str(vocabulary),
                          min_score=float(result.scores.max()) + 1)
    assert strict.label_from_similarity(activations, concepts, similarity).labels == [None, None, None]


def test_clip_inputs_that_cannot_work_are_refused_in_one_sentence(tiny_clip, tmp_path: Path) -> None:
    from mu_core.neurons.foundation import load_clip
    from tests.clip_fixtures import TINY_CLIP

    checkpoint, config, _ = tiny_clip
    (tmp_path / "model.bin").write_bytes(b"\x80\x04not a state dict")
    with pytest.raises(AuditInputError, match=r"not a \.safetensors file"):
        load_clip(tmp_path / "model.bin", str(config))
    with pytest.raises(AuditInputError, match="no model config named"):
        load_clip(checkpoint, "ViT-Imaginary-1")
    hub = tmp_path / "hub.json"
    hub.write_text(json.dumps({**TINY_CLIP, "text_cfg": {**TINY_CLIP["text_cfg"], "hf_tokenizer_name": "org/tokenizer"}}))
    with pytest.raises(AuditInputError, match="Hugging Face hub"):
        load_clip(checkpoint, str(hub))
    wider = tmp_path / "wider.json"
    wider.write_text(json.dumps({**TINY_CLIP, "embed_dim": 24}))
    with pytest.raises(AuditInputError, match="does not hold"):
        load_clip(checkpoint, str(wider))
    (tmp_path / "broken.safetensors").write_bytes(b"\xff" * 8 + checkpoint.read_bytes()[8:])  # a header longer than the file
    with pytest.raises(AuditInputError, match="does not hold"):
        load_clip(tmp_path / "broken.safetensors", str(config))
    with pytest.raises(AuditInputError, match="cannot hold"):
        load_clip(checkpoint, "ViT-bigG-14")  # 2.5 billion parameters: refused from the file's size, before any is allocated


def test_python_m_mu_core_explain_labels_with_open_clip_offline(tiny_clip, digits, digits_cnn, tmp_path: Path) -> None:
    from mu_core.forget import random_request, write_request
    from mu_core.models import save_model

    model, record = digits_cnn
    save_model(model, record, tmp_path / "o.safetensors")
    save_model(model, record, tmp_path / "u.safetensors")
    write_request(random_request(record.train_indices, 40, seed=0), tmp_path / "forget.txt")
    checkpoint, config, vocabulary = tiny_clip
    out = tmp_path / "explained"
    argv = ["explain", "--original", str(tmp_path / "o.safetensors"), "--unlearned", str(tmp_path / "u.safetensors"),
            "--forget", str(tmp_path / "forget.txt"), "--layer", "fc1", "--max-samples", "60", "--labeller", "open_clip",
            "--clip-checkpoint", str(checkpoint), "--clip-model", str(config), "--vocabulary", str(vocabulary),
            "--compare-labeller", "selectivity", "--device", "cpu", "--out", str(out)]
    code = GUARD_SOURCE + f"import runpy\nsys.argv = ['mu_core', *{argv!r}]\nrunpy.run_module('mu_core', run_name='__main__')\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MU_AUDIT_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "NETWORK ATTEMPT" not in proc.stderr
    assert "labels agree (open_clip vs selectivity), original:" in proc.stdout
    data = json.loads((out / "neurons.json").read_text())
    assert data["labeller"] == "open_clip" and data["compared_labeller"] == "selectivity"
    settings = data["labeller_settings"]["open_clip"]
    assert settings["checkpoint"] == str(checkpoint) and settings["vocabulary_size"] == len(VOCABULARY)
    allowed = set(VOCABULARY) | {c["name"] for c in data["concepts"]}  # the vocabulary plus the probe set's own names
    neurons = [n for n in data["neurons"] if n["layer"] == "fc1"]
    assert len(neurons) == 2 * 128
    assert all(n["label"] in allowed and math.isfinite(n["score"]) for n in neurons)
    assert sum(n["label"] in VOCABULARY for n in neurons) > len(neurons) // 4  # the word list is really used
    for n in neurons:
        scores = [c["score"] for c in n["concepts"]]
        assert len(scores) == 5 and all(math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)
        assert n["concepts"][0]["name"] == n["label"] and n["description"].startswith(f"Responds to {n['label']}, then ")
        assert n["compared"]["labeller"] == "selectivity" and n["compared"]["agree"] in (True, False, None)
    agreement = data["label_agreement"]["original"]["fc1"]
    verdicts = [n["compared"]["agree"] for n in neurons if n["model"] == "original"]
    assert agreement["agree"] == verdicts.count(True) and agreement["labelled_by_both"] == len(verdicts) - verdicts.count(None)
    assert data["label_seconds"]["open_clip"] > 0


def test_the_open_clip_labeller_needs_its_checkpoint_on_the_command_line(digits_cnn, tmp_path: Path, capsys) -> None:
    from mu_core.cli import main

    model, record = digits_cnn
    from mu_core.models import save_model

    save_model(model, record, tmp_path / "o.safetensors")
    (tmp_path / "forget.txt").write_text("1\n2\n")
    assert main(["explain", "--original", str(tmp_path / "o.safetensors"), "--unlearned", str(tmp_path / "o.safetensors"),
                 "--forget", str(tmp_path / "forget.txt"), "--labeller", "open_clip", "--out", str(tmp_path / "out")]) == 2
    assert "--clip-checkpoint" in capsys.readouterr().err
