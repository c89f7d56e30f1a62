"""Dataset loaders: the digits split, IDX folders, CIFAR-10 batches and image folders (or zips)."""

from __future__ import annotations

import gzip
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mu_core.data import list_datasets, load_dataset
from mu_core.data.digits import load_digits
from mu_core.data.idx import FASHION_CLASSES
from mu_core.errors import AuditInputError

FASHION_ROOT = Path(__file__).parents[2] / ".." / "shared" / "datasets" / "fashion-mnist"


def assert_one_sentence(message: str) -> None:
    assert "\n" not in message
    assert message.endswith("."), message


# --- digits -----------------------------------------------------------------------------------


def test_digits_is_the_default_and_splits_1437_train_360_test(digits):
    assert list_datasets()[0] == "digits"
    assert (digits.n_train, digits.n_test) == (1437, 360)
    assert digits.in_shape == (1, 8, 8)
    assert digits.class_names == tuple(str(d) for d in range(10))
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64


def test_digits_split_keeps_each_class_share_in_test(digits):
    train_counts = np.bincount(digits.y_train.numpy(), minlength=10)
    test_counts = np.bincount(digits.y_test.numpy(), minlength=10)
    totals = train_counts + test_counts
    assert totals.sum() == 1797
    # stratified 80/20: every class puts 20 % of its samples in test, give or take one
    assert np.all(np.abs(test_counts - 0.2 * totals) <= 1), (test_counts, totals)


def test_digits_split_is_identical_across_two_loads(digits):
    first, second = load_digits(), load_digits()
    for a, b in zip(first[:4], second[:4], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(first[0], digits.x_train) and torch.equal(first[1], digits.y_train)
    assert torch.equal(first[2], digits.x_test) and torch.equal(first[3], digits.y_test)


def test_digits_pixel_values_span_zero_to_one(digits):
    for x in (digits.x_train, digits.x_test):
        assert float(x.min()) == 0.0
        assert float(x.max()) == 1.0


def test_unknown_dataset_name_is_refused():
    with pytest.raises(AuditInputError, match="Unknown dataset 'imagenet'"):
        load_dataset("imagenet")


# --- IDX (MNIST, Fashion-MNIST) ---------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(root: Path, *, gz: bool) -> dict[str, np.ndarray]:
    """Six 4x5 training images and three test images with known pixels and labels."""
    root.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": (np.arange(6 * 4 * 5) * 7 % 256).reshape(6, 4, 5),
        "train-labels-idx1-ubyte": np.array([0, 1, 2, 9, 5, 3]),
        "t10k-images-idx3-ubyte": (np.arange(3 * 4 * 5) * 11 % 256).reshape(3, 4, 5),
        "t10k-labels-idx1-ubyte": np.array([4, 8, 0]),
    }
    for name, array in arrays.items():
        raw = idx_bytes(array)
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (root / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzipped"])
def test_idx_folder_is_read_with_exact_pixels_and_labels(tmp_path, gz):
    arrays = write_idx_folder(tmp_path / "mnist", gz=gz)
    data = load_dataset("mnist", root=str(tmp_path / "mnist"))
    assert (data.n_train, data.n_test, data.in_shape) == (6, 3, (1, 4, 5))
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.float32) / 255.0).unsqueeze(1)
    assert torch.equal(data.x_train, expected)
    assert data.y_train.tolist() == [0, 1, 2, 9, 5, 3]
    assert data.y_test.tolist() == [4, 8, 0]
    assert data.class_names == tuple(str(d) for d in range(10))


def test_idx_root_can_come_from_mu_audit_data(tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "data" / "fashion-mnist", gz=False)
    monkeypatch.setenv("MU_AUDIT_DATA", str(tmp_path / "data"))
    data = load_dataset("fashion-mnist")
    assert data.n_train == 6
    assert data.class_names == FASHION_CLASSES


def test_truncated_idx_file_is_refused_with_a_sentence(tmp_path):
    root = tmp_path / "mnist"
    write_idx_folder(root, gz=False)
    images = root / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(AuditInputError, match="truncated or malformed") as info:
        load_dataset("mnist", root=str(root))
    assert_one_sentence(str(info.value))


def test_truncated_gzip_idx_file_is_refused(tmp_path):
    root = tmp_path / "mnist"
    write_idx_folder(root, gz=True)
    labels = root / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:12])
    with pytest.raises(AuditInputError, match=r"t10k-labels-idx1-ubyte\.gz") as info:
        load_dataset("mnist", root=str(root))
    assert_one_sentence(str(info.value))


def test_idx_file_with_wrong_magic_is_refused_with_a_sentence(tmp_path):
    root = tmp_path / "mnist"
    write_idx_folder(root, gz=False)
    labels = root / "train-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x09\x01" + labels.read_bytes()[4:])  # 0x09: not unsigned bytes
    with pytest.raises(AuditInputError, match="not an unsigned-byte IDX file with 1 dimension") as info:
        load_dataset("mnist", root=str(root))
    assert_one_sentence(str(info.value))


def test_idx_folder_lacking_a_file_names_it(tmp_path):
    root = tmp_path / "mnist"
    write_idx_folder(root, gz=False)
    (root / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(AuditInputError, match="lacks t10k-images-idx3-ubyte"):
        load_dataset("mnist", root=str(root))


def test_missing_data_root_is_refused(tmp_path):
    with pytest.raises(AuditInputError, match="does not exist") as info:
        load_dataset("mnist", root=str(tmp_path / "nowhere"))
    assert_one_sentence(str(info.value))


def test_dataset_on_disk_without_a_root_asks_for_data_root():
    with pytest.raises(AuditInputError, match="--data-root"):
        load_dataset("fashion-mnist")


@pytest.mark.skipif(not FASHION_ROOT.is_dir(), reason="Fashion-MNIST is not at ../shared/datasets/fashion-mnist")
def test_fashion_mnist_folder_gives_60000_train_10000_test_28x28():
    data = load_dataset("fashion-mnist", root=str(FASHION_ROOT))
    assert (data.n_train, data.n_test) == (60000, 10000)
    assert data.in_shape == (1, 28, 28)
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    assert np.bincount(data.y_test.numpy()).tolist() == [1000] * 10


# --- CIFAR-10 ---------------------------------------------------------------------------------


def test_cifar10_batches_folder_is_read_in_batch_order(cifar10_root):
    data = load_dataset("cifar10", root=str(cifar10_root))
    assert (data.n_train, data.n_test, data.in_shape) == (20, 4, (3, 32, 32))
    with open(cifar10_root / "data_batch_2", "rb") as fh:
        batch = pickle.load(fh)
    # samples 4..7 come from data_batch_2, reshaped channel-first and scaled to [0, 1]
    expected = torch.from_numpy(batch[b"data"].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    assert torch.equal(data.x_train[4:8], expected)
    assert data.y_train[4:8].tolist() == batch[b"labels"]
    assert data.class_names[0] == "airplane" and len(data.class_names) == 10


def test_cifar10_parent_folder_of_the_batches_is_accepted(cifar10_root):
    data = load_dataset("cifar10", root=str(cifar10_root.parent))
    assert data.n_train == 20


class RunsAShellCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_cifar10_batch_holding_pickled_code_is_refused_without_running_it(cifar10_root, tmp_path):
    marker = tmp_path / "pwned"
    with open(cifar10_root / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": RunsAShellCommand(marker), b"labels": [0]}, fh)
    with pytest.raises(AuditInputError, match="data_batch_3' is not a CIFAR-10 batch file we can read safely"):
        load_dataset("cifar10", root=str(cifar10_root))
    assert not marker.exists()


def test_cifar10_folder_lacking_the_test_batch_is_refused(cifar10_root):
    (cifar10_root / "test_batch").unlink()
    with pytest.raises(AuditInputError, match="lacks 'test_batch'"):
        load_dataset("cifar10", root=str(cifar10_root))


# --- image folders and zips -------------------------------------------------------------------


def write_image_folder(root: Path, *, mode: str = "L", per_class: int = 5, classes=("cat", "dog")) -> None:
    """``per_class`` 6x6 images per class; every pixel of image i of class c is 40*c + 5*i."""
    from PIL import Image

    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            value = 40 * c + 5 * i
            colour = value if mode == "L" else (value, 255 - value, 7)
            Image.new(mode, (6, 6), colour).save(folder / f"{i:02d}.png")


def zip_folder(folder: Path, archive: Path, *, arc_root: str) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*.png")):
            zf.write(path, f"{arc_root}/{path.relative_to(folder).as_posix()}")
    return archive


def test_grey_image_folder_is_split_80_20_per_class(tmp_path):
    write_image_folder(tmp_path / "pets", mode="L")
    data = load_dataset("imagefolder", root=str(tmp_path / "pets"))
    assert data.class_names == ("cat", "dog")
    assert (data.n_train, data.n_test, data.in_shape) == (8, 2, (1, 6, 6))
    assert sorted(data.y_test.tolist()) == [0, 1]
    assert np.bincount(data.y_train.numpy()).tolist() == [4, 4]
    # each image is one flat grey level: 40*class + 5*i, over 255
    levels = sorted(round(float(x.mean()) * 255) for x in torch.cat([data.x_train, data.x_test]))
    assert levels == [0, 5, 10, 15, 20, 40, 45, 50, 55, 60]


def test_rgb_image_folder_keeps_three_channels(tmp_path):
    write_image_folder(tmp_path / "pets", mode="RGB")
    data = load_dataset("imagefolder", root=str(tmp_path / "pets"))
    assert data.in_shape == (3, 6, 6)
    first = data.x_train[0]
    assert [round(float(first[ch].mean()) * 255) for ch in range(3)] == [0, 255, 7]


def test_image_folder_with_train_and_test_subfolders_uses_them(tmp_path):
    write_image_folder(tmp_path / "pets" / "train", per_class=3)
    write_image_folder(tmp_path / "pets" / "test", per_class=2)
    data = load_dataset("imagefolder", root=str(tmp_path / "pets"))
    assert (data.n_train, data.n_test) == (6, 4)
    assert data.y_test.tolist() == [0, 0, 1, 1]


def test_image_folder_with_one_class_is_refused(tmp_path):
    write_image_folder(tmp_path / "pets", classes=("cat",))
    with pytest.raises(AuditInputError, match="at least two sub-folders"):
        load_dataset("imagefolder", root=str(tmp_path / "pets"))


def test_zipped_image_folder_loads_like_the_folder(tmp_path, audit_home):
    write_image_folder(tmp_path / "pets", mode="RGB")
    archive = zip_folder(tmp_path / "pets", tmp_path / "pets.zip", arc_root="pets")
    from_folder = load_dataset("imagefolder", root=str(tmp_path / "pets"))
    from_zip = load_dataset("imagefolder", root=str(archive))
    assert from_zip.class_names == from_folder.class_names
    assert torch.equal(from_zip.x_train, from_folder.x_train)
    assert torch.equal(from_zip.y_test, from_folder.y_test)
    unpacked = list((audit_home / "datasets").iterdir())
    assert len(unpacked) == 1 and (unpacked[0] / "pets" / "dog" / "04.png").is_file()


def test_zip_with_a_path_outside_its_folder_is_refused(tmp_path, audit_home):
    write_image_folder(tmp_path / "pets")
    archive = zip_folder(tmp_path / "pets", tmp_path / "evil.zip", arc_root="pets")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../../escaped.png", b"not an image")
    with pytest.raises(AuditInputError, match=r"holds a path outside its folder \('\.\./\.\./escaped\.png'\)"):
        load_dataset("imagefolder", root=str(archive))
    assert not list(tmp_path.rglob("escaped.png"))
    assert not (audit_home / "datasets").exists() or not any((audit_home / "datasets").iterdir())


def test_file_that_is_not_a_zip_is_refused(tmp_path):
    bogus = tmp_path / "pets.zip"
    bogus.write_bytes(b"PK\x03\x04 but not really a zip")
    with pytest.raises(AuditInputError, match="not a valid zip file"):
        load_dataset("imagefolder", root=str(bogus))
