"""A folder (or zip) of images with one sub-folder per class.

If the folder has ``train/`` and ``test/`` sub-folders, those are the splits; otherwise a fixed
stratified 80/20 split (seed 0) is made. Images are converted to grey when every image is grey,
else to RGB, and resized to the first image's size when sizes differ.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import AuditInputError
from . import register_dataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
#: Largest uncompressed size of an uploaded zip we unpack.
MAX_ZIP_BYTES = 2 * 1024**3
#: Images larger than this on a side are shrunk to it.
MAX_SIDE = 128
TEST_SHARE = 0.2


def unpack_zip(path: Path, dest_root: Path) -> Path:
    """Unpack ``path`` under ``dest_root/<hash>/`` safely (no paths outside, bounded size)."""
    import shutil

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    dest = dest_root / digest
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
                raise AuditInputError(f"'{path.name}' unpacks to more than {MAX_ZIP_BYTES // 1024**3} GiB; use a folder.")
            for member in members:
                target = (tmp / member.filename).resolve()
                if not target.is_relative_to(tmp.resolve()):
                    raise AuditInputError(f"'{path.name}' holds a path outside its folder ('{member.filename}').")
            archive.extractall(tmp)
    except zipfile.BadZipFile:
        raise AuditInputError(f"'{path.name}' is not a valid zip file.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(dest)
    return dest


def _class_root(root: Path) -> Path:
    """Descend through a single wrapping folder (as zips often have)."""
    entries = [p for p in root.iterdir() if not p.name.startswith((".", "__"))]
    while len(entries) == 1 and entries[0].is_dir() and not _images_in(entries[0]):
        root = entries[0]
        entries = [p for p in root.iterdir() if not p.name.startswith((".", "__"))]
    return root


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _scan(root: Path) -> dict[str, list[Path]]:
    classes = {d.name: _images_in(d) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith((".", "__"))}
    classes = {name: files for name, files in classes.items() if files}
    if len(classes) < 2:
        raise AuditInputError(
            f"'{root}' needs at least two sub-folders of images, one per class (found {len(classes)})."
        )
    return classes


def _read_images(files: list[Path], size: tuple[int, int], grey: bool) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(files), 1 if grey else 3, size[1], size[0]), dtype=np.float32)
    for i, file in enumerate(files):
        try:
            with Image.open(file) as img:
                img = img.convert("L" if grey else "RGB")
                if img.size != size:
                    img = img.resize(size)
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as exc:
            raise AuditInputError(f"'{file.name}' is not a readable image ({exc}).") from None
        out[i] = arr[None] if grey else arr.transpose(2, 0, 1)
    return out


def _probe(files: list[Path]) -> tuple[tuple[int, int], bool]:
    from PIL import Image, UnidentifiedImageError

    grey, size = True, None
    for file in files:
        try:
            with Image.open(file) as img:
                size = size or img.size
                grey = grey and img.mode in {"1", "L", "LA", "I", "I;16", "F"}
        except (UnidentifiedImageError, OSError) as exc:
            raise AuditInputError(f"'{file.name}' is not a readable image ({exc}).") from None
    assert size is not None
    scale = min(1.0, MAX_SIDE / max(size))
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale))), grey


@register_dataset("imagefolder", needs_root=True, description="a folder or zip with one sub-folder per class")
def load_imagefolder(root: Path):
    if root.is_file():
        if root.suffix.lower() != ".zip":
            raise AuditInputError(f"'{root.name}' is neither a folder nor a .zip of class folders.")
        from ..case import audit_home

        root = unpack_zip(root, audit_home() / "datasets")
    root = _class_root(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, test = _scan(root / "train"), _scan(root / "test")
        if set(test) - set(train):
            raise AuditInputError(f"'{root}/test' has classes that '{root}/train' lacks.")
        names = sorted(train)
        train_files = [(f, names.index(c)) for c in names for f in train[c]]
        test_files = [(f, names.index(c)) for c in names for f in test.get(c, [])]
    else:
        from sklearn.model_selection import train_test_split

        classes = _scan(root)
        names = sorted(classes)
        files = [(f, names.index(c)) for c in names for f in classes[c]]
        labels = [label for _, label in files]
        counts = np.bincount(labels)
        if counts.min() < 2:
            raise AuditInputError("Every class folder needs at least two images to split into train and test.")
        train_i, test_i = train_test_split(np.arange(len(files)), test_size=TEST_SHARE, stratify=labels, random_state=0)
        train_files = [files[i] for i in np.sort(train_i)]
        test_files = [files[i] for i in np.sort(test_i)]
    size, grey = _probe([f for f, _ in train_files])
    x_train = _read_images([f for f, _ in train_files], size, grey)
    x_test = _read_images([f for f, _ in test_files], size, grey)
    return (
        torch.from_numpy(x_train),
        torch.tensor([label for _, label in train_files], dtype=torch.int64),
        torch.from_numpy(x_test),
        torch.tensor([label for _, label in test_files], dtype=torch.int64),
        tuple(names),
    )
