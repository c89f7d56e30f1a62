"""A folder (or zip) of images with one sub-folder per class.

If the folder has ``train/`` and ``test/`` sub-folders, those are the splits; otherwise a fixed
stratified 80/20 split (seed 0) is made. Images are converted to grey when every image is grey,
else to RGB, and resized to the first image's size when sizes differ.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import AuditInputError
from . import register_dataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
#: Largest number of bytes we write while unpacking an uploaded zip (counted as written, not as declared).
MAX_ZIP_BYTES = 2 * 1024**3
#: Largest compression ratio an entry may show once past 1 MiB (images hardly compress; a bomb does, 1000:1).
MAX_ZIP_RATIO = 100
#: Most entries (files and folders) an uploaded zip may hold.
MAX_ZIP_ENTRIES = 50_000
#: Largest image we decode, in pixels (a 20000 x 20000 PNG is refused unread).
MAX_IMAGE_PIXELS = 40_000_000
#: Most values (images x channels x height x width) a loaded image folder may hold: 1 GiB of float32.
MAX_DATASET_VALUES = 256 * 1024**2
#: Images larger than this on a side are shrunk to it.
MAX_SIDE = 128
TEST_SHARE = 0.2
_CHUNK = 1 << 20


def _sha256_stream(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unpack_zip(path: Path, dest_root: Path) -> Path:
    """Unpack ``path`` under ``dest_root/<hash>/`` safely.

    Entries are streamed one by one against a running budget of bytes actually written
    (``MAX_ZIP_BYTES``, whatever the zip declares), of compression ratio (``MAX_ZIP_RATIO``) and
    of entries (``MAX_ZIP_ENTRIES``); paths
    outside the folder are refused; on any failure the partial folder is removed.
    """
    import shutil

    dest = dest_root / _sha256_stream(path)[:16]
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        base = tmp.resolve()
        written = 0
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_ZIP_ENTRIES:
                raise AuditInputError(f"'{path.name}' holds {len(members)} entries, more than the {MAX_ZIP_ENTRIES} allowed; use a folder.")
            for member in members:
                target = (base / member.filename).resolve()
                if not target.is_relative_to(base) or (target == base and not member.is_dir()):
                    raise AuditInputError(f"'{path.name}' holds a path outside its folder ('{member.filename[:200]}').")
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                entry_bytes = 0
                with archive.open(member) as src, open(target, "wb") as out:
                    for chunk in iter(lambda src=src: src.read(_CHUNK), b""):
                        written += len(chunk)
                        entry_bytes += len(chunk)
                        if written > MAX_ZIP_BYTES:
                            raise AuditInputError(f"'{path.name}' unpacks to more than {MAX_ZIP_BYTES // 1024**3} GiB; use a folder.")
                        if entry_bytes > _CHUNK and entry_bytes > MAX_ZIP_RATIO * max(member.compress_size, 1):
                            raise AuditInputError(
                                f"'{path.name}' holds '{member.filename[:100]}', which inflates more than {MAX_ZIP_RATIO}:1 like a zip bomb; "
                                "zip the images themselves."
                            )
                        out.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AuditInputError(f"'{path.name}' is not a valid zip file ({str(exc)[:120] or type(exc).__name__}).") from None
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

    channels = 1 if grey else 3
    if len(files) * channels * size[0] * size[1] > MAX_DATASET_VALUES:
        raise AuditInputError(
            f"{len(files)} images of {size[0]}x{size[1]} are more than the {MAX_DATASET_VALUES:,} values an image folder may hold; use fewer or smaller images."
        )
    out = np.empty((len(files), channels, size[1], size[0]), dtype=np.float32)
    for i, file in enumerate(files):
        try:
            with Image.open(file) as img:
                _check_pixels(img, file)
                img = img.convert("L" if grey else "RGB")
                if img.size != size:
                    img = img.resize(size)
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise _refuse_bomb(file, exc) from None
        out[i] = arr[None] if grey else arr.transpose(2, 0, 1)
    return out


def _refuse_bomb(file: Path, exc: Exception) -> AuditInputError:
    from PIL import Image

    if isinstance(exc, Image.DecompressionBombError):
        return AuditInputError(f"'{file.name}' has more than the {MAX_IMAGE_PIXELS:,} pixels allowed per image; shrink it first.")
    return AuditInputError(f"'{file.name}' is not a readable image ({str(exc)[:200]}).")


def _check_pixels(img, file: Path) -> None:
    """Refuse an image whose header promises more than ``MAX_IMAGE_PIXELS`` (before decoding it)."""
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS or getattr(img, "n_frames", 1) > 1000:
        raise AuditInputError(
            f"'{file.name}' is {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS:,} allowed per image; shrink it first."
        )


def _probe(files: list[Path]) -> tuple[tuple[int, int], bool]:
    from PIL import Image, UnidentifiedImageError

    grey, size = True, None
    for file in files:
        try:
            with Image.open(file) as img:
                _check_pixels(img, file)
                size = size or img.size
                grey = grey and img.mode in {"1", "L", "LA", "I", "I;16", "F"}
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise _refuse_bomb(file, exc) from None
    assert size is not None
    scale = min(1.0, MAX_SIDE / max(size))
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale))), grey


@register_dataset("imagefolder", needs_root=True, description="a folder or zip with one sub-folder per class")
def load_imagefolder(root: Path):
    if not root.is_file():
        return _load_folder(root)
    if root.suffix.lower() != ".zip":
        raise AuditInputError(f"'{root.name}' is neither a folder nor a .zip of class folders.")
    import shutil

    from ..case import audit_home

    unpacked = unpack_zip(root, audit_home() / "datasets")
    try:
        return _load_folder(unpacked)
    except AuditInputError as exc:  # name the user's zip, not the folder it was unpacked to; keep no copy
        shutil.rmtree(unpacked, ignore_errors=True)
        raise AuditInputError(str(exc).replace(str(unpacked), root.name)) from None
    except BaseException:
        shutil.rmtree(unpacked, ignore_errors=True)
        raise


def _load_folder(root: Path):
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
        n_test = int(np.ceil(TEST_SHARE * len(files)))
        if n_test < len(names) or len(files) - n_test < len(names):
            raise AuditInputError(
                f"'{root}' has {len(files)} images in {len(names)} classes, too few for a {TEST_SHARE:.0%} test split "
                f"with every class on both sides (at least {5 * len(names)} needed); add images or give train/ and test/ sub-folders."
            )
        train_i, test_i = train_test_split(np.arange(len(files)), test_size=TEST_SHARE, stratify=labels, random_state=0)
        train_files = [files[i] for i in np.sort(train_i)]
        test_files = [files[i] for i in np.sort(test_i)]
    if len(train_files) + len(test_files) > MAX_ZIP_ENTRIES:
        raise AuditInputError(f"'{root}' holds {len(train_files) + len(test_files)} images, more than the {MAX_ZIP_ENTRIES} allowed.")
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
