"""Neuron-level explanations: layers, CKA, attributions, labels, whole-class forgetting, CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mu_core.errors import AuditInputError
from mu_core.neurons import (
    build_probe_set,
    explainable_layers,
    get_labeller,
    input_attribution,
    layer_conductance,
    linear_cka,
    neuron_attribution,
    receptive_boxes,
    render_visual_concepts,
    soft_wpmi,
)
from mu_core.neurons.concepts import ProbeSet

FORGOTTEN_CLASS = 3


@pytest.fixture(scope="module")
def whole_class(digits, digits_cnn):
    """The digits cnn, class 3 forgotten by retraining from scratch with the same recipe."""
    from mu_core.forget import class_request
    from mu_core.unlearn import unlearn

    model, record = digits_cnn
    request = class_request(record.train_indices, digits.y_train.numpy(), FORGOTTEN_CLASS, class_names=digits.class_names)
    result = unlearn(copy.deepcopy(model), record, request.indices, method="retrain", dataset=digits)
    return (copy.deepcopy(model), record), (result.model, result.record), request


@pytest.fixture(scope="module")
def explained(whole_class):
    from mu_core.neurons import explain_models

    original, retrained, request = whole_class
    return explain_models({"original": original, "unlearned": retrained, "retrained": retrained}, request.indices, max_samples=300)


def test_cka_of_a_representation_with_itself_is_one_and_ignores_rotation() -> None:
    rng = np.random.default_rng(0)
    narrow, wide = rng.normal(size=(60, 5)), rng.normal(size=(20, 50))  # both code paths (features < and > samples)
    assert linear_cka(narrow, narrow) == pytest.approx(1.0)
    assert linear_cka(wide, wide) == pytest.approx(1.0)
    rotation, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    assert linear_cka(narrow, 3.0 * narrow @ rotation) == pytest.approx(1.0)
    assert linear_cka(narrow, rng.normal(size=(60, 5))) < 0.4


def test_cka_of_the_cnn_with_itself_is_one(digits, digits_cnn) -> None:
    from mu_core.neurons import layer_outputs

    model = digits_cnn[0]
    outputs = layer_outputs(model, digits.x_test[:100], ["conv2", "fc1"])
    for out in outputs.values():
        flat = out.reshape(len(out), -1).numpy()
        assert linear_cka(flat, flat) == pytest.approx(1.0)


def test_layers_are_found_in_forward_order_with_the_output_marked(digits_cnn, digits_mlp) -> None:
    cnn = explainable_layers(digits_cnn[0], (1, 8, 8))
    assert [(layer.name, layer.kind, layer.units) for layer in cnn] == [("conv1", "conv", 16), ("conv2", "conv", 32), ("fc1", "linear", 128),
                                                                         ("fc2", "linear", 10)]
    assert [layer.is_output for layer in cnn] == [False, False, False, True]
    assert [layer.name for layer in explainable_layers(digits_mlp[0], (1, 8, 8)) if layer.is_output] == ["fc3"]


def test_attribution_shapes_and_integrated_gradients_completeness(digits, digits_cnn) -> None:
    model = digits_cnn[0]
    x, y = digits.x_test[:3], digits.y_test[:3]
    ig = input_attribution(model, x, y, "integrated_gradients")
    saliency = input_attribution(model, x, y, "saliency")
    assert ig.shape == saliency.shape == (3, 8, 8)
    assert (saliency >= 0).all()
    with torch.no_grad():  # completeness: IG sums to logit(x) - logit(black baseline), up to the Riemann error
        gap = (model(x) - model(torch.zeros_like(x)))[torch.arange(3), y].numpy()
    np.testing.assert_allclose(ig.reshape(3, -1).sum(1), gap, rtol=0.1, atol=0.1)
    assert layer_conductance(model, "conv2", x, y).shape == (3, 32)
    assert layer_conductance(model, "fc1", x, y).shape == (3, 128)
    for layer, neuron in (("conv1", 4), ("fc1", 7)):
        for method in ("neuron_conductance", "neuron_integrated_gradients"):
            assert neuron_attribution(model, layer, neuron, x[0], method=method).shape == (8, 8)
    with pytest.raises(AuditInputError):
        input_attribution(model, x, y, "lime")


def test_first_conv_receptive_field_is_its_3x3_kernel(digits, digits_cnn) -> None:
    boxes = receptive_boxes(digits_cnn[0], "conv1", digits.x_test[:2], np.array([0, 5]), np.array([[4, 4], [0, 0]]))
    assert boxes.tolist() == [[3, 3, 6, 6], [0, 0, 2, 2]]  # interior 3x3; the corner is clipped by the padding
    wide = receptive_boxes(digits_cnn[0], "conv2", digits.x_test[:1], np.array([0]), np.array([[2, 2]]))[0]
    assert (wide[2] - wide[0]) > 3 and (wide[3] - wide[1]) > 3  # after a pool, conv2 sees beyond 3x3


def test_visual_concepts_render_at_the_input_size_and_repeat_with_the_seed() -> None:
    grey, names, concept = render_visual_concepts((1, 8, 8), per_concept=4, seed=1)
    assert grey.shape == (4 * len(names), 1, 8, 8) and grey.min() >= 0 and grey.max() <= 1
    assert {"stroke 45°", "stripes vertical", "checkers", "blob", "ring", "bright"} <= set(names)
    again, _, _ = render_visual_concepts((1, 8, 8), per_concept=4, seed=1)
    np.testing.assert_array_equal(grey, again)
    rgb, rgb_names, rgb_concept = render_visual_concepts((3, 32, 28), per_concept=2)
    assert rgb.shape[1:] == (3, 32, 28) and "colour red" in rgb_names
    red = rgb[np.flatnonzero(rgb_concept == rgb_names.index("colour red"))[0]]
    assert red[0].mean() > 0.9 and red[1].mean() < 0.1
    # strokes at 0° are horizontal: rows vary, columns do not
    strokes = grey[np.flatnonzero(concept == names.index("stroke 0°"))]
    assert np.abs(np.diff(strokes[..., 0, :, :].mean(axis=-1), axis=-1)).max() > 0.3
    assert np.abs(np.diff(strokes[..., 0, :, :].mean(axis=-2), axis=-1)).max() < 0.1


def _probe_set(n_per: int = 30) -> ProbeSet:
    names = ("cat", "dog", "stripes", "blob")
    concept = np.repeat(np.arange(4), n_per)
    return ProbeSet(np.zeros((len(concept), 1, 2, 2), dtype=np.float32), concept, names, ("class", "class", "visual", "visual"))


def test_selectivity_labels_a_planted_concept_and_leaves_noise_unlabelled() -> None:
    probes = _probe_set()
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(len(probes.concept), 3))
    acts[probes.concept == 1, 0] += 3.0  # neuron 0: dog
    acts[probes.concept == 2, 1] += 3.0  # neuron 1: stripes; neuron 2: noise
    labels = get_labeller("selectivity").label(acts, probes)
    assert labels.labels == ["dog", "stripes", None]
    assert labels.scores[0] > 0.9 and labels.p_values[0] < 1e-6
    both = acts.copy()
    both[:, 2] = 0.0
    both[np.isin(probes.concept, [0, 1]), 2] = 5.0  # fires on every class alike
    assert get_labeller("selectivity").label(both, probes).labels[2] is None  # not selective for one class


def test_soft_wpmi_picks_the_concept_of_the_top_images() -> None:
    rng = np.random.default_rng(0)
    similarity = np.eye(3)[np.repeat(np.arange(3), 10)] + rng.normal(0, 0.01, size=(30, 3))
    acts = np.zeros((30, 2))
    acts[20:, 0] = 1 + rng.random(10)  # neuron 0: images of concept 2
    acts[:10, 1] = 1 + rng.random(10)  # neuron 1: concept 0
    assert soft_wpmi(acts, similarity, top_k=5).argmax(axis=1).tolist() == [2, 0]


def test_open_clip_labeller_needs_a_local_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(AuditInputError, match="checkpoint"):
        get_labeller("open_clip", checkpoint=str(tmp_path / "missing.bin"))
    with pytest.raises(AuditInputError, match="Unknown labeller"):
        get_labeller("gpt")


def test_probe_set_takes_class_images_from_the_test_split(digits) -> None:
    probes = build_probe_set(digits.x_test.numpy(), digits.y_test.numpy(), digits.class_names, per_class=5, per_visual=3)
    assert probes.names[:10] == digits.class_names and probes.families[10] == "visual"
    assert np.bincount(probes.concept[:50], minlength=10).tolist() == [5] * 10


def test_whole_class_retraining_leaves_fewer_neurons_labelled_with_the_forgotten_class(explained) -> None:
    data = explained.data
    counts = data["forgotten_concept_neurons"]
    assert counts["classes"] == [str(FORGOTTEN_CLASS)]
    assert counts["before"] > counts["after"] == counts["retrained"]
    assert data["final_layer_label_agreement"] >= 0.9
    output = [n for n in data["neurons"] if n["model"] == "unlearned" and n["layer"] == "fc2"]
    assert output[FORGOTTEN_CLASS]["label"] != str(FORGOTTEN_CLASS)
    # the retrained model shares no units with the original: CKA stays high on retained data
    assert data["cka"]["fc1"]["original_vs_unlearned"]["retain"] > data["cka"]["fc1"]["original_vs_unlearned"]["forget"]
    assert data["cka"]["conv1"]["unlearned_vs_retrained"]["forget"] == pytest.approx(1.0)


def test_changed_neurons_are_ranked_and_shared_units_get_a_change(explained) -> None:
    data, arrays = explained.data, explained.arrays
    change = arrays["change__fc1"]
    assert change.shape == (128,) and (change >= 0).all()
    ranked = [n for n in data["neurons"] if n["model"] == "original" and n["layer"] == "fc1"]
    assert [n["change"] for n in ranked] == pytest.approx(change.tolist(), abs=1e-3)
    assert all(n["change"] is None for n in data["neurons"] if n["model"] == "retrained")
    assert arrays["stats_mean__original__conv2"].shape == (3, 32)
    assert arrays["top_box__original__conv2"].shape == (32, 6, 4)
    assert arrays["attr__integrated_gradients__unlearned"].shape == (4, 8, 8)


def test_cli_explain_writes_neurons_json_and_heatmaps(whole_class, tmp_path: Path) -> None:
    from mu_core.cli import main
    from mu_core.forget import write_request
    from mu_core.models import save_model

    (original, record), (retrained, retrained_record), request = whole_class
    save_model(original, record, tmp_path / "o.safetensors")
    save_model(retrained, retrained_record, tmp_path / "r.safetensors")
    write_request(request, tmp_path / "forget.json")
    out = tmp_path / "explained"
    code = main(["explain", "--original", str(tmp_path / "o.safetensors"), "--unlearned", str(tmp_path / "r.safetensors"),
                 "--forget", str(tmp_path / "forget.json"), "--layer", "fc1", "--layer", "fc2", "--max-samples", "100", "--out", str(out)])
    assert code == 0
    data = json.loads((out / "neurons.json").read_text())
    assert {"cka", "neurons", "final_layer_label_agreement", "forgotten_concept_neurons"} <= set(data)
    assert set(data["forgotten_concept_neurons"]) >= {"before", "after"}
    assert set(data["neurons"][0]) >= {"model", "layer", "index", "label", "score", "change"}
    assert {n["layer"] for n in data["neurons"]} == {"fc1", "fc2"}
    assert set(data["cka"]) == {"fc1", "fc2"}
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == len(data["heatmaps"]) >= 4 and pngs[0].read_bytes()[:4] == b"\x89PNG"
    assert main(["explain", "--original", str(tmp_path / "o.safetensors"), "--unlearned", str(tmp_path / "r.safetensors"),
                 "--forget", str(tmp_path / "forget.json"), "--layer", "fc9", "--out", str(out)]) == 2
