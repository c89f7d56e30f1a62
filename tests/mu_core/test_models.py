"""Architectures and model files: safetensors round trips, state dicts, and refusals."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mu_core.data import DatasetSpec
from mu_core.errors import AuditInputError
from mu_core.models import build_model, list_archs, load_model, save_model, sha256_file
from mu_core.models.io import decode_indices, encode_indices, read_record


def test_registry_lists_the_four_classifiers_and_the_ddpm():
    assert list_archs() == ["mlp", "cnn", "resnet18", "resnet18_small", "ddpm"]


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet18", "resnet18_small"])
@pytest.mark.parametrize("in_shape", [(1, 8, 8), (3, 32, 32)], ids=["grey8", "rgb32"])
def test_every_architecture_gives_one_logit_per_class(arch, in_shape):
    torch.manual_seed(0)
    model = build_model(arch, in_shape, 7).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, *in_shape))
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


def test_unknown_architecture_and_bad_shapes_are_refused():
    with pytest.raises(AuditInputError, match="Unknown architecture 'vit'"):
        build_model("vit", (1, 8, 8), 10)
    with pytest.raises(AuditInputError, match="not \\(channels, height, width\\)"):
        build_model("mlp", (8, 8), 10)
    with pytest.raises(AuditInputError, match="at least two classes"):
        build_model("mlp", (1, 8, 8), 1)
    with pytest.raises(AuditInputError, match="not 4 channels"):
        build_model("resnet18", (4, 32, 32), 10)


def test_resnet18_parameter_names_match_torchvision():
    import torchvision

    ours = build_model("resnet18", (3, 32, 32), 10).state_dict()
    theirs = torchvision.models.resnet18(num_classes=10).state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in theirs)


def test_torchvision_resnet18_state_dict_loads_unchanged(tmp_path, cifar10_root):
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=10).eval()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model, record = load_model(tmp_path / "resnet18.pth", arch="resnet18", dataset=DatasetSpec("cifar10", str(cifar10_root)))
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert record.source == "state_dict"
    assert record.in_shape == (3, 32, 32) and record.class_names[3] == "cat"
    assert record.train_indices.tolist() == list(range(20))


def test_grey_input_is_repeated_to_three_channels_for_resnet():
    torch.manual_seed(0)
    model = build_model("resnet18_small", (1, 8, 8), 10).eval()
    grey = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(grey), model(grey.expand(-1, 3, -1, -1)))


# --- safetensors round trip -------------------------------------------------------------------


def test_safetensors_round_trip_keeps_weights_bit_identical_and_the_record(tmp_path, digits_mlp):
    model, record = digits_mlp
    train_indices = np.array([0, 3, 7, 8, 1000, 1436])
    record = record.with_updates(train_indices=train_indices)
    path = save_model(model, record, tmp_path / "sub" / "model.safetensors")
    loaded, loaded_record = load_model(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded_record.train_indices.tolist() == [0, 3, 7, 8, 1000, 1436]
    assert loaded_record.train_indices.dtype == np.int64
    assert loaded_record.recipe == record.recipe
    assert loaded_record.recipe["epochs"] == 15 and loaded_record.recipe["seed"] == 0
    assert loaded_record.class_names == tuple(str(d) for d in range(10))
    assert loaded_record.in_shape == (1, 8, 8) and loaded_record.n_train_split == 1437
    assert loaded_record.dataset == {"name": "digits", "root": None}
    assert loaded_record.metrics["test_acc"] == record.metrics["test_acc"]
    assert not loaded.training
    assert not [p.name for p in path.parent.iterdir() if p.name != "model.safetensors"]  # no temp files left


def test_unlearning_forget_indices_survive_the_file(tmp_path, digits_mlp):
    model, record = digits_mlp
    record = record.with_updates(
        train_indices=np.setdiff1d(record.train_indices, [5, 6, 900]),
        unlearning={
            "method": "neggrad",
            "params": {"lr": 0.001},
            "forget_indices": [5, 6, 900],
            "source_sha256": "ab",
            "seconds": 0.1,
        },
    )
    save_model(model, record, tmp_path / "u.safetensors")
    loaded = read_record(tmp_path / "u.safetensors")
    assert loaded is not None
    assert loaded.forget_indices.tolist() == [5, 6, 900]
    assert loaded.unlearning["params"] == {"lr": 0.001}
    assert len(loaded.train_indices) == 1434


def test_naming_another_architecture_for_our_file_is_refused(tmp_path, digits_mlp):
    path = save_model(*digits_mlp, tmp_path / "m.safetensors")
    with pytest.raises(AuditInputError, match="holds a 'mlp' model, not 'cnn'"):
        load_model(path, arch="cnn")


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    path = tmp_path / "blob.bin"
    path.write_bytes(b"mu audit" * 1000)
    assert sha256_file(path) == hashlib.sha256(b"mu audit" * 1000).hexdigest()


# --- plain state dicts and refusals -----------------------------------------------------------


class RunsAShellCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_pickled_code_in_pt_file_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"fc1.weight": RunsAShellCommand(marker)}, tmp_path / "evil.pt")
    with pytest.raises(AuditInputError, match="holds pickled code or objects") as info:
        load_model(tmp_path / "evil.pt", arch="mlp", dataset="digits")
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_plain_state_dict_loads_with_arch_and_dataset(tmp_path, digits_mlp):
    model, _ = digits_mlp
    torch.save(model.state_dict(), tmp_path / "mlp.pt")
    loaded, record = load_model(tmp_path / "mlp.pt", arch="mlp", dataset="digits")
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert record.source == "state_dict"
    assert record.train_indices.tolist() == list(range(1437))
    assert "unknown" in record.recipe["note"]


def test_wrapped_and_prefixed_state_dict_loads(tmp_path, digits_mlp):
    model, _ = digits_mlp
    wrapped = {"epoch": torch.tensor(3), "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    loaded, _ = load_model(tmp_path / "ckpt.pth", arch="mlp", dataset="digits")
    assert torch.equal(loaded.state_dict()["fc3.bias"], model.state_dict()["fc3.bias"])


def test_plain_state_dict_without_arch_or_dataset_says_what_to_name(tmp_path, digits_mlp):
    torch.save(digits_mlp[0].state_dict(), tmp_path / "mlp.pt")
    with pytest.raises(AuditInputError, match=r"name its architecture and dataset \(--arch and --dataset\)"):
        load_model(tmp_path / "mlp.pt")
    with pytest.raises(AuditInputError, match="--arch and --dataset"):
        load_model(tmp_path / "mlp.pt", arch="mlp")


def test_state_dict_of_another_architecture_reports_missing_weights(tmp_path, digits_mlp):
    torch.save(digits_mlp[0].state_dict(), tmp_path / "mlp.pt")
    with pytest.raises(AuditInputError, match=r"does not fit architecture 'cnn'.*weight\(s\) missing \(e.g. 'conv1.weight'\)"):
        load_model(tmp_path / "mlp.pt", arch="cnn", dataset="digits")


def test_state_dict_for_other_input_size_reports_the_shape(tmp_path, digits_mlp, cifar10_root):
    torch.save(digits_mlp[0].state_dict(), tmp_path / "mlp.pt")
    with pytest.raises(AuditInputError, match=r"'fc1.weight' has shape \(256, 64\), expected \(256, 3072\)"):
        load_model(tmp_path / "mlp.pt", arch="mlp", dataset=DatasetSpec("cifar10", str(cifar10_root)))


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AuditInputError, match=r"'noise\.pt'"):
        load_model(path, arch="mlp", dataset="digits")


def test_truncated_safetensors_file_is_refused(tmp_path, digits_mlp):
    path = save_model(*digits_mlp, tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(AuditInputError, match=r"'m\.safetensors'"):
        load_model(path)


def test_missing_model_file_is_refused(tmp_path):
    with pytest.raises(AuditInputError, match="does not exist"):
        load_model(tmp_path / "absent.safetensors")


# --- index encoding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "indices, n",
    [([], 5), ([0], 1), ([0, 1, 2, 3, 4, 5, 6, 7, 8], 9), ([3, 17, 1436], 1437), (list(range(0, 60000, 7)), 60000)],
    ids=["empty", "single", "full-nine", "sparse", "large"],
)
def test_encode_then_decode_indices_is_exact(indices, n):
    encoded = encode_indices(np.array(indices, dtype=np.int64), n)
    assert encoded["n"] == n and encoded["count"] == len(indices)
    decoded = decode_indices(encoded)
    assert decoded.dtype == np.int64
    assert decoded.tolist() == sorted(indices)


def test_record_summary_counts_training_samples(digits_mlp):
    _, record = digits_mlp
    summary = record.summary()
    assert summary["arch"] == "mlp" and summary["dataset"] == "digits"
    assert summary["classes"] == 10 and summary["train_samples"] == 1437
