"""Hostile inputs, made on the spot (no binary blobs in the repository), and a runner that feeds
them to MU Audit one by one and records what happened to each.

``python -m tests.fuzz.hostile [CATEGORY ...]`` prints the table the issue asks for (category,
inputs tried, clear errors, crashes, hangs, peak memory); the fuzz tests run one category per
subprocess through :func:`main` and read its JSON lines.

Every case returns ``(outcome, message)``: ``clear`` when MU Audit refused the input with one
sentence (``AuditInputError``; through the CLI, exit status 2), ``accepted`` when it took the input
(right for a few cases, such as a BOM), ``crash`` for any other exception.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import pickle
import resource
import struct
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

Case = tuple[str, Callable[[Path], object], str]  # name, action(tmp) -> result, expected: "clear" | "accepted"


# --- Model files ----------------------------------------------------------------------------------------------

_DTYPES = {np.float32: "F32", np.float64: "F64", np.int8: "I8", np.int64: "I64", np.bool_: "BOOL"}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: object) -> Path:
    """A safetensors file written by hand, so any dtype and any metadata text can go in."""
    header: dict = {}
    offset, blobs = 0, []
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": _DTYPES[array.dtype.type], "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    if metadata is not None:
        header["__metadata__"] = {"mu_audit": metadata if isinstance(metadata, str) else json.dumps(metadata)}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path


def base_model() -> tuple[dict[str, np.ndarray], dict]:
    """An honest digits ``cnn`` (untrained weights) and its metadata as a dict."""
    import torch

    from mu_core.data import load_dataset
    from mu_core.models import build_model
    from mu_core.models.io import ModelRecord

    data = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("cnn", data.in_shape, data.num_classes)
    record = ModelRecord(arch="cnn", in_shape=data.in_shape, class_names=data.class_names, dataset=data.spec.to_dict(),
                         train_indices=np.arange(data.n_train), n_train_split=data.n_train, recipe={"epochs": 1})
    tensors = {k: v.numpy() for k, v in model.state_dict().items()}
    return tensors, json.loads(record.to_metadata()["mu_audit"])


def bomb_bitmap(n: int, inflated_bytes: int) -> dict:
    """A zlib bomb posing as an index bitmap: ``inflated_bytes`` of 0xFF from a few hundred KB."""
    inflater = zlib.compressobj(9)
    chunk = b"\xff" * (1 << 20)
    parts = [inflater.compress(chunk) for _ in range(inflated_bytes >> 20)]
    parts.append(inflater.flush())
    return {"n": n, "count": n, "bitmap_zlib_b64": base64.b64encode(b"".join(parts)).decode()}


def _cli(*argv: str) -> tuple[int, str]:
    from mu_core.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue().strip()


def _load_via_cli(path: Path, *extra: str) -> object:
    """``forget --class 0 --model PATH``: a class request loads the model and its dataset fully (a random
    request reads only the record); exit 2 becomes a clear refusal."""
    code, message = _cli("forget", "--class", "0", "--model", str(path), *extra, "--out", str(path.parent / "f.txt"))
    if code == 2:
        from mu_core.errors import AuditInputError

        raise AuditInputError(message.removeprefix("error: "))
    if code != 0:
        raise RuntimeError(f"exit {code}: {message}")
    return "loaded"


def model_cases() -> list[Case]:
    tensors, meta = base_model()

    def with_meta(**changes) -> Callable[[Path], object]:
        def run(tmp: Path) -> object:
            data = {**meta, **changes}
            return _load_via_cli(write_safetensors(tmp / "m.safetensors", tensors, data))
        return run

    def raw_meta(text: object) -> Callable[[Path], object]:
        return lambda tmp: _load_via_cli(write_safetensors(tmp / "m.safetensors", tensors, text))

    def with_tensor(key: str, value: np.ndarray) -> Callable[[Path], object]:
        return lambda tmp: _load_via_cli(write_safetensors(tmp / "m.safetensors", {**tensors, key: value}, meta))

    def untrusted_root(tmp: Path) -> object:
        # a model naming a folder of the uploader's choice (holding valid MNIST files) as its data
        folder = tmp / "elsewhere"
        folder.mkdir()
        _write_idx(folder, n_train=6, n_test=4)
        tiny = {**meta, "dataset": {"name": "mnist", "root": str(folder)}, "in_shape": [1, 28, 28], "n_train_split": 6,
                "train_indices": {"n": 6, "count": 6, "bitmap_zlib_b64": base64.b64encode(zlib.compress(np.packbits(np.ones(6, bool)).tobytes())).decode()}}
        import torch

        from mu_core.models import build_model

        weights = {k: v.numpy() for k, v in build_model("cnn", (1, 28, 28), 10).state_dict().items()}
        os.environ.pop("MU_AUDIT_DATA", None)
        return _load_via_cli(write_safetensors(tmp / "m.safetensors", weights, tiny)) and torch.__version__

    def pickle_named_safetensors(tmp: Path) -> object:
        return _load_via_cli(_evil_pickle(tmp / "model.safetensors"))

    def pickle_pt(tmp: Path) -> object:
        path = _evil_pickle(tmp / "model.pt")
        try:
            return _load_via_cli(path, "--arch", "cnn", "--dataset", "digits")
        finally:
            if Path("/tmp/mu_audit_fuzz_pwned").exists():
                raise RuntimeError("the pickle's code ran")

    def folder(tmp: Path) -> object:
        (tmp / "dir.safetensors").mkdir()
        return _load_via_cli(tmp / "dir.safetensors")

    def truncated(tmp: Path) -> object:
        path = write_safetensors(tmp / "m.safetensors", tensors, meta)
        path.write_bytes(path.read_bytes()[:-100])
        return _load_via_cli(path)

    first = next(iter(tensors))
    nan = tensors[first].copy()
    nan.flat[0] = np.nan
    inf = tensors["fc2.weight"].copy()
    inf.flat[-1] = np.inf
    return [
        ("bitmap zlib bomb, n = 1.68e9", with_meta(n_train_split=1_680_000_000, train_indices=bomb_bitmap(1_680_000_000, 64 << 20)), "clear"),
        ("bitmap zlib bomb, n = 1437", with_meta(train_indices=bomb_bitmap(1437, 256 << 20)), "clear"),
        ("bitmap n = -5", with_meta(train_indices={**meta["train_indices"], "n": -5}), "clear"),
        ("bitmap n as text", with_meta(train_indices={**meta["train_indices"], "n": "1437"}), "clear"),
        ("bitmap past the dataset (n = 5000)", with_meta(n_train_split=5000, train_indices={"n": 5000, "count": 5000, "bitmap_zlib_b64": base64.b64encode(zlib.compress(np.packbits(np.ones(5000, bool)).tobytes())).decode()}), "clear"),
        ("0 training samples", with_meta(train_indices={"n": 1437, "count": 0, "bitmap_zlib_b64": base64.b64encode(zlib.compress(bytes(180))).decode()}), "clear"),
        ("bitmap not base64", with_meta(train_indices={**meta["train_indices"], "bitmap_zlib_b64": "!!!"}), "clear"),
        ("forget bitmap bomb", with_meta(unlearning={"method": "finetune", "params": {}, "forget_indices": bomb_bitmap(1437, 128 << 20)}), "clear"),
        ("metadata is a list", raw_meta([1, 2, 3]), "clear"),
        ("metadata is not JSON", raw_meta("{nope"), "clear"),
        ("metadata nested 100000 deep", raw_meta("[" * 100_000 + "]" * 100_000), "clear"),
        ("unlearning is a string", with_meta(unlearning="finetune"), "clear"),
        ("unlearning params a string", with_meta(unlearning={"method": "finetune", "params": "lr=1"}), "clear"),
        ("dataset is a string", with_meta(dataset="digits"), "clear"),
        ("dataset unknown", with_meta(dataset={"name": "no-such-set"}), "clear"),
        ("input_shape 1e6", with_meta(in_shape=[1, 1000, 1000]), "clear"),
        ("input_shape 25e6", with_meta(in_shape=[1, 5000, 5000]), "clear"),
        ("input_shape negative", with_meta(in_shape=[1, -8, 8]), "clear"),
        ("input_shape floats", with_meta(in_shape=[1.0, 8.5, 8]), "clear"),
        ("2,000,000 classes", with_meta(class_names=[str(i) for i in range(2_000_000)]), "clear"),
        ("classes is a dict", with_meta(class_names={"a": 1}), "clear"),
        ("arch unknown", with_meta(arch="evil"), "clear"),
        ("arch is a number", with_meta(arch=7), "clear"),
        ("format_version as text", with_meta(format_version="1"), "clear"),
        ("format_version from the future", with_meta(format_version=99), "clear"),
        ("recipe with 10^9 epochs", with_meta(recipe={"epochs": 10**9}), "clear"),
        ("recipe with a NaN learning rate", raw_meta(json.dumps({**meta, "recipe": {"lr": float("nan")}})), "clear"),
        ("recipe sisa with 10^9 shards", with_meta(recipe={"sisa": {"shards": 10**9, "slices": 1, "assignment": []}}), "clear"),
        ("NaN weight", with_tensor(first, nan), "clear"),
        ("Inf weight", with_tensor("fc2.weight", inf), "clear"),
        ("bool weights", with_tensor(first, np.ones(tensors[first].shape, np.bool_)), "clear"),
        ("int8 weights", with_tensor(first, np.ones(tensors[first].shape, np.int8)), "clear"),
        ("wrong shape", with_tensor(first, np.zeros((3, 3), np.float32)), "clear"),
        ("extra tensor", with_tensor("evil.weight", np.zeros(4, np.float32)), "clear"),
        ("model names its own data folder", untrusted_root, "clear"),
        ("pickle with code named .safetensors", pickle_named_safetensors, "clear"),
        ("pickle with code as .pt", pickle_pt, "clear"),
        ("a directory", folder, "clear"),
        ("truncated safetensors", truncated, "clear"),
        ("honest model", with_meta(), "accepted"),
    ]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/mu_audit_fuzz_pwned",))


def _evil_pickle(path: Path) -> Path:
    path.write_bytes(pickle.dumps({"fc.weight": _Evil()}))
    return path


def _write_idx(folder: Path, n_train: int, n_test: int) -> None:
    for stem, n in (("train", n_train), ("t10k", n_test)):
        (folder / f"{stem}-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", n, 28, 28) + bytes(n * 784))
        (folder / f"{stem}-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", n) + bytes(i % 10 for i in range(n)))


# --- Zips and images -------------------------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header promises ``width`` x ``height`` pixels (a decompression bomb's calling card)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def tiny_png(value: int = 0) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (4, 4), value).save(buf, format="PNG")
    return buf.getvalue()


def _load_zip(path: Path) -> object:
    from mu_core.data import DatasetSpec, load_dataset

    data = load_dataset(DatasetSpec("imagefolder", str(path)))
    return f"{data.n_train} train samples"


def zip_cases() -> list[Case]:
    import mu_core.data.imagefolder as imagefolder

    def make(entries: Callable[[zipfile.ZipFile], None], compression: int = zipfile.ZIP_DEFLATED) -> Callable[[Path], object]:
        def run(tmp: Path) -> object:
            path = tmp / "upload.zip"
            with zipfile.ZipFile(path, "w", compression) as archive:
                entries(archive)
            return _load_zip(path)
        return run

    def size_bomb(archive: zipfile.ZipFile) -> None:
        # the 1 MB zip of 1 GiB of zeros, streamed in (making it costs no memory)
        with archive.open("a/big.png", "w", force_zip64=True) as out:
            block = bytes(64 << 20)
            for _ in range(16):
                out.write(block)
        archive.writestr("b/x.png", tiny_png())

    def count_bomb(archive: zipfile.ZipFile) -> None:
        info = zipfile.ZipInfo("a/0.png")
        for i in range(100_000):
            info.filename = f"{'ab'[i % 2]}/{i}.png"
            archive.writestr(info, b"")

    def pixel_bomb(archive: zipfile.ZipFile) -> None:
        for cls in "ab":
            for i in range(5):
                archive.writestr(f"{cls}/{i}.png", tiny_png(i))
        archive.writestr("a/huge.png", png_header_only(20_000, 20_000))

    def two_by_two(archive: zipfile.ZipFile) -> None:
        for cls in "ab":
            for i in range(2):
                archive.writestr(f"{cls}/{i}.png", tiny_png(i))

    def slip(archive: zipfile.ZipFile) -> None:
        archive.writestr("../../escaped.png", tiny_png())

    def not_images(archive: zipfile.ZipFile) -> None:
        for cls in "ab":
            for i in range(5):
                archive.writestr(f"{cls}/{i}.png", b"not a png at all")

    def honest(archive: zipfile.ZipFile) -> None:
        for cls in "ab":
            for i in range(5):
                archive.writestr(f"wrap/{cls}/{i}.png", tiny_png(40 * i))

    def not_a_zip(tmp: Path) -> object:
        path = tmp / "upload.zip"
        path.write_bytes(b"PK\x03\x04 this is not really a zip")
        return _load_zip(path)

    assert imagefolder.MAX_ZIP_RATIO <= 100
    return [
        ("zip bomb by size (1 GiB of zeros)", make(size_bomb), "clear"),
        ("zip bomb by count (100,000 files)", make(count_bomb, zipfile.ZIP_STORED), "clear"),
        ("20000x20000 PNG", make(pixel_bomb), "clear"),
        ("empty zip", make(lambda archive: None), "clear"),
        ("2 classes x 2 images", make(two_by_two), "clear"),
        ("zip-slip entry", make(slip), "clear"),
        ("files that are not images", make(not_images), "clear"),
        ("not a zip", not_a_zip, "clear"),
        ("honest zip in a wrapping folder", make(honest), "accepted"),
    ]


# --- Forget files ----------------------------------------------------------------------------------------------


def forget_cases() -> list[Case]:
    from mu_core.forget import read_request

    def text(content: str | bytes, suffix: str = ".txt", expect_kind: str | None = None) -> Callable[[Path], object]:
        def run(tmp: Path) -> object:
            path = tmp / f"forget{suffix}"
            path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
            request = read_request(path)
            if expect_kind is not None and request.kind != expect_kind:
                raise RuntimeError(f"a comment set the request's kind to {request.kind!r}")
            code, message = _cli("forget", "--indices", str(path), "--dataset", "digits", "--out", str(tmp / "out.txt"))
            if code == 2:
                from mu_core.errors import AuditInputError

                raise AuditInputError(message.removeprefix("error: "))
            return request.indices.tolist()
        return run

    def folder(tmp: Path) -> object:
        (tmp / "forget.txt").mkdir()
        return read_request(tmp / "forget.txt")

    return [
        ("99999999999999999999999", text("1\n99999999999999999999999\n"), "clear"),
        ("1_0", text("1_0\n"), "clear"),
        ("Arabic-Indic digits", text("\u0661\u0662\n"), "clear"),
        ("full-width digits", text("\uff11\uff12\n"), "clear"),
        ("+5", text("+5\n"), "clear"),
        ("NUL in a line", text("5\x00\n"), "clear"),
        ("index past the dataset", text("5\n5000\n"), "clear"),
        ("negative index", text("-1\n"), "clear"),
        ("not UTF-8", text(b"\xff\xfe\x00\x01"), "clear"),
        ("JSON params a string", text('{"indices": [1, 2], "params": "seed=1"}', ".json"), "clear"),
        ("JSON params a number", text('{"indices": [1, 2], "params": 5}', ".json"), "clear"),
        ("JSON kind a list", text('{"indices": [1, 2], "kind": ["class"]}', ".json"), "clear"),
        ("JSON huge index", text('{"indices": [1, 99999999999999999999999]}', ".json"), "clear"),
        ("JSON bool index", text('{"indices": [true, 2]}', ".json"), "clear"),
        ("JSON nested 100000 deep", text("[" * 100_000 + "]" * 100_000, ".json"), "clear"),
        ("JSON is a list", text("[1, 2]", ".json"), "clear"),
        ("a directory", folder, "clear"),
        ("BOM, one per line (accepted)", text("\ufeff3\n4\n", expect_kind="indices"), "accepted"),
        ("BOM, CSV header (accepted)", text("\ufeffindex\n3\n4\n", ".csv"), "accepted"),
        ("# kind=class comment (kind stays indices)", text("# kind=class params={\"class\": 3}\n3\n4\n", expect_kind="indices"), "accepted"),
    ]


# --- Case names ------------------------------------------------------------------------------------------------


def name_cases() -> list[Case]:
    from mu_core.case import MAX_NAME_CHARS, CaseStore

    def named(name: str) -> Callable[[Path], object]:
        def run(tmp: Path) -> object:
            case = CaseStore(tmp / "home").create(name)
            stored = case.name
            if len(stored) > MAX_NAME_CHARS or any(ord(c) < 32 for c in stored):
                raise RuntimeError(f"name stored as given: {stored[:60]!r}")
            return stored
        return run

    return [
        ("HTML", named("<script>alert(1)</script><b>x</b>"), "accepted"),
        ("javascript: link", named("[click](javascript:alert(1))"), "accepted"),
        ("1,000,000 characters", named("x" * 1_000_000), "accepted"),
        ("NUL and newlines", named("a\x00b\nc\r\u202eevil"), "accepted"),
    ]


CATEGORIES: dict[str, Callable[[], list[Case]]] = {
    "model files": model_cases,
    "zips and images": zip_cases,
    "forget files": forget_cases,
    "case names": name_cases,
}


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm_up() -> None:
    """Import torch and the engine and load the bundled digits once, so a case's memory growth is its own."""
    import torch

    from mu_core.data import load_dataset
    from mu_core.models import build_model

    load_dataset("digits")
    build_model("cnn", (1, 8, 8), 10)(torch.zeros(2, 1, 8, 8))
    _cli("list")
    import PIL.PngImagePlugin  # noqa: F401
    import sklearn.model_selection  # noqa: F401


def run_category(category: str, emit: Callable[[dict], None]) -> None:
    """Run every case of ``category`` in this process, emitting one JSON-able dict per case."""
    from mu_core.errors import AuditInputError

    _warm_up()
    cases = CATEGORIES[category]()
    for name, action, expected in cases:
        emit({"event": "start", "case": name})
        with tempfile.TemporaryDirectory(prefix="mu_fuzz_") as tmp:
            home = Path(tmp) / "home"
            os.environ["MU_AUDIT_HOME"] = str(home)
            before, started = _peak_mib(), time.perf_counter()
            try:
                result = action(Path(tmp))
                outcome, message = "accepted", str(result)[:200]
            except AuditInputError as exc:
                outcome, message = "clear", str(exc)
            except Exception as exc:
                outcome, message = "crash", f"{type(exc).__name__}: {str(exc)[:300]}"
            seconds = time.perf_counter() - started
            leftovers = sorted(p.name for p in (home / "datasets").iterdir()) if (home / "datasets").is_dir() else []
        emit({"event": "done", "case": name, "expected": expected, "outcome": outcome, "message": message,
              "seconds": round(seconds, 3), "peak_growth_mib": round(_peak_mib() - before, 1), "peak_mib": round(_peak_mib(), 1),
              "leftovers": leftovers})


def main(argv: list[str] | None = None) -> int:
    """``--jsonl CATEGORY``: one category's JSON lines (for the tests); else the table for the given categories."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--jsonl"]:
        run_category(argv[1], lambda row: print(json.dumps(row), flush=True))
        return 0
    import subprocess

    print("| category | inputs tried | clear errors | accepted as intended | crashes | hangs | peak memory growth (MiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for category in argv or list(CATEGORIES):
        proc = subprocess.run([sys.executable, "-m", "tests.fuzz.hostile", "--jsonl", category], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        done = [r for r in rows if r["event"] == "done"]
        started = {r["case"] for r in rows if r["event"] == "start"}
        unfinished = started - {r["case"] for r in done}
        clear = sum(r["outcome"] == "clear" == r["expected"] for r in done)
        accepted = sum(r["outcome"] == "accepted" == r["expected"] for r in done)
        crashes = sum(r["outcome"] == "crash" for r in done) + (len(unfinished) if proc.returncode else 0)
        growth = max((r["peak_growth_mib"] for r in done), default=0.0)
        print(f"| {category} | {len(started)} | {clear} | {accepted} | {crashes} | 0 | {growth:.0f} (max {max((r['seconds'] for r in done), default=0):.1f} s) |")
        for r in done:
            if r["outcome"] != r["expected"]:
                print(f"|  ! {r['case']} | expected {r['expected']} | got {r['outcome']}: {r['message'][:120]} | | | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
