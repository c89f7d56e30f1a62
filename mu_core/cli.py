"""The command line: ``python -m mu_core {train,forget,unlearn,audit,demo,compare,invert,explain,report,keygen,verify,replay,purge,check-record,threat,screen,serve,generate,cluster,list}``.

Results go to stdout, progress to stderr. Bad input exits with status 2 and one line saying
what is wrong (set ``MU_AUDIT_DEBUG=1`` for a traceback of unexpected errors).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import AuditInputError

EXIT_BAD_INPUT = 2
#: ``audit --fail-on VERDICT`` exits with this status when the verdict is VERDICT.
EXIT_VERDICT = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise AuditInputError(f"{message} (see '{self.prog} --help')")


class _Bar:
    """A progress callback drawing a tqdm bar on stderr: from the first progress report on (bad
    input found before any work leaves stderr with its one error line), also into a log or a
    pipe, redrawn at most ten times a second, and left in place at the end."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar = None
        self.drawn = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        import time

        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=100, desc=self.label, file=sys.stderr, leave=True, disable=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
        self.bar.n = round(100 * fraction)
        self.bar.set_postfix_str(message[:60], refresh=False)
        if fraction >= 1.0 or time.monotonic() - self.drawn >= 0.1:
            self.bar.refresh()
            self.drawn = time.monotonic()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _with_bar(label: str, fn, *args, **kwargs):
    bar = _Bar(label)
    try:
        return fn(*args, progress=bar, **kwargs)
    finally:
        bar.close()


def _out_path(path: str, suffix: str | None = None) -> Path:
    out = Path(path)
    if suffix and out.suffix.lower() != suffix:
        raise AuditInputError(f"--out must end in {suffix}: '{path}'.")
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from .data import DatasetSpec, load_dataset
    from .models import save_model
    from .train import TrainConfig, default_config, fit_model

    out = _out_path(args.out, ".safetensors")
    data = load_dataset(DatasetSpec(args.dataset, args.data_root))
    config = default_config(args.arch, args.train_size or data.n_train, seed=args.seed, epochs=args.epochs)
    overrides = {k: v for k, v in {"lr": args.lr, "batch_size": args.batch_size}.items() if v}
    config = TrainConfig(**{**config.to_dict(), **overrides})
    if args.sisa and args.arch == "ddpm":
        raise AuditInputError("--sisa trains classifier ensembles; a DDPM trains as one model.")
    if args.sisa and args.init:
        raise AuditInputError("--init fine-tunes one model from a base; it does not combine with --sisa.")
    if args.sisa:
        from .train import fit_sisa, subset_indices

        shards, slices = _parse_sisa(args.sisa)
        indices = subset_indices(data.n_train, args.train_size, args.seed) if args.train_size else None
        model, record = _with_bar("train", fit_sisa, data, args.arch, config, shards=shards, slices=slices,
                                  aggregate=args.sisa_aggregate, train_indices=indices, device=args.device)
    else:
        model, record = _with_bar("train", fit_model, data, args.arch, config, train_size=args.train_size, init=args.init,
                                  timesteps=args.timesteps, device=args.device)
    save_model(model, record, out)
    m = record.metrics
    print(f"wrote {out}: {args.arch} on {args.dataset}, {len(record.train_indices)} training samples, "
          f"train accuracy {m['train_acc']:.2%}, test accuracy {m['test_acc']:.2%}, {m['train_seconds']:.1f} s on {m['device']}")
    return 0


def _parse_sisa(text: str) -> tuple[int, int]:
    shards, _, slices = text.lower().partition("x")
    try:
        return int(shards), int(slices)
    except ValueError:
        raise AuditInputError(f"--sisa takes SHARDSxSLICES, e.g. 5x4, not '{text}'.") from None


def _load(path: str, args: argparse.Namespace):
    from .models import load_model

    return load_model(path, arch=getattr(args, "arch", None), dataset=getattr(args, "dataset", None), data_root=getattr(args, "data_root", None))


def cmd_forget(args: argparse.Namespace) -> int:
    import numpy as np

    from .forget import class_request, explicit_request, random_request, read_request, write_request

    if not args.model and not args.dataset:
        raise AuditInputError("Name the model (--model) or the dataset (--dataset) to draw samples from.")
    record = _quick_record(args.model) if args.model and args.cls is None else None
    if record is not None:  # a random or explicit request needs only the record's training set: no torch, no dataset
        train_idx, n_train, data = record.train_indices, record.n_train_split, None
    elif args.model:
        from .data import DatasetSpec, load_dataset

        _, record = _load(args.model, args)
        train_idx = record.train_indices
        data = load_dataset(DatasetSpec.from_dict(record.dataset))
        n_train = data.n_train
    else:
        from .data import DatasetSpec, load_dataset

        data = load_dataset(DatasetSpec(args.dataset, args.data_root))
        train_idx, n_train = np.arange(data.n_train, dtype=np.int64), data.n_train
    if args.random is not None:
        request = random_request(train_idx, args.random, seed=args.seed)
    elif args.cls is not None:
        cls = _class_index(args.cls, data.class_names)
        request = class_request(train_idx, data.y_train.numpy(), cls, share=args.share, seed=args.seed, class_names=data.class_names)
    else:
        request = explicit_request(read_request(args.indices).indices, train_idx, n_train)
    out = write_request(request, _out_path(args.out))
    print(f"wrote {out}: {request.describe()}")
    return 0


def _quick_record(path: str):
    """The record of a MU Audit ``.safetensors`` file read from its header alone (numpy, no torch), or
    ``None`` when the file needs the full load to be understood or refused (a plain state dict, a pickle,
    a damaged file: :func:`~mu_core.models.load_model` then says what is wrong in one sentence)."""
    from .models.io import read_record

    file = Path(path)
    if not file.is_file() or file.suffix.lower() != ".safetensors":
        return None
    try:
        return read_record(file)
    except AuditInputError:
        return None


def _class_index(value: str, class_names: tuple[str, ...]) -> int:
    if value in class_names:
        return class_names.index(value)
    try:
        return int(value)
    except ValueError:
        raise AuditInputError(f"Class '{value}' is neither a class index nor one of: {', '.join(class_names)}.") from None


def cmd_unlearn(args: argparse.Namespace) -> int:
    from .forget import read_request
    from .models import save_model, sha256_file
    from .unlearn import unlearn

    out = _out_path(args.out, ".safetensors")
    model, record = _load(args.model, args)
    request = read_request(args.forget)
    result = _with_bar(
        args.method, unlearn, model, record, request.indices, method=args.method, params=args.param or [],
        source_sha256=sha256_file(args.model), device=args.device,
    )
    save_model(result.model, result.record, out)
    m = result.record.metrics
    print(f"wrote {out}: {args.method} on {len(request)} samples in {result.seconds:.1f} s; forget accuracy "
          f"{m['forget_acc']:.2%}, retain {m['retain_acc']:.2%}, test {m['test_acc']:.2%}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from .attacks import get_attack
    from .audit.report import run_audit
    from .forget import read_request
    from .unlearn import parse_params

    paths = {"original": args.original, "unlearned": args.unlearned}
    if args.retrained:
        paths["retrained"] = args.retrained[0]
    models = {role: _load(path, args) for role, path in paths.items()}
    more_retrained = [_load(path, args) for path in (args.retrained or [])[1:]]
    request = read_request(args.forget)
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()] if args.attacks else None
    from .diffusion_cli import audit_options

    attacks, options = audit_options(models["original"][1], attacks, args)
    reference_dir = None
    if args.case:
        from .case import MANIFEST

        case_dir = Path(args.case)
        reference_dir = case_dir / "references" if (case_dir / MANIFEST).is_file() else case_dir
    method_params = parse_params(args.method, args.param or []) if args.method else None
    if args.reference_models < 2 or args.reference_models % 2:
        raise AuditInputError("--reference-models must be even and at least 2 (e.g. 16).")
    from .audit.report import check_settings
    from .audit.retrains import retrains_note
    from .models.ddpm import is_diffusion

    if args.retrains is None:  # the default: 4 retrains for a classifier; a diffusion model's retrain costs minutes
        args.retrains = 0 if is_diffusion(models["original"][1]) else 4
    check_settings(margin=args.margin, alpha=args.alpha, bootstrap=args.bootstrap, attacks=attacks)
    print(retrains_note(models["original"][1], args.retrains, len(args.retrained or []), len(request.indices), reference_dir), file=sys.stderr)
    if attacks and any(get_attack(a).reference_models for a in attacks) and not is_diffusion(models["original"][1]):
        from .attacks.reference import estimate_reference_seconds
        from .data import DatasetSpec, load_dataset

        original = models["original"][1]
        data = load_dataset(DatasetSpec.from_dict(original.dataset))
        seconds = estimate_reference_seconds(original, data, args.reference_models)
        print(f"reference models: {args.reference_models}, estimated training time {seconds:.0f} s "
              f"(reused from {reference_dir} when present)" if reference_dir else
              f"reference models: {args.reference_models}, estimated training time {seconds:.0f} s (pass --case DIR to keep them)",
              file=sys.stderr)
    result = _with_bar(
        "audit", run_audit, models, request.indices, attacks=attacks, seed=args.seed, model_files=paths, device=args.device,
        reference_models=args.reference_models, reference_dir=reference_dir, method=args.method, method_params=method_params,
        margin=args.margin, alpha=args.alpha, bootstrap=args.bootstrap, retrains=args.retrains, more_retrained=more_retrained, options=options,
    )
    path = result.write(args.out)
    if reference_dir is not None and reference_dir.parent == Path(args.case):
        from .case import Case
        from .models import sha256_file

        Case(Path(args.case)).log("audit", report_sha256=sha256_file(path), verdict=result.data["verdict"], via="cli",
                                  models={role: sha256_file(p) for role, p in paths.items()})
    print(f"wrote {path}")
    print(result.data["summary"])
    if args.fail_on and result.data["verdict"] == args.fail_on:
        return EXIT_VERDICT
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_methods
    from .forget import read_request

    model, record = _load(args.model, args)
    request = read_request(args.forget)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise AuditInputError("--methods names no method; give a comma-separated list (see 'list').")
    result = _with_bar("compare", compare_methods, model, record, request.indices, methods, grid=args.grid, floor=args.floor,
                       repeats=args.repeats, seed=args.seed, device=args.device)
    path = result.write(args.out)
    print(f"wrote {path}")
    def metrics(name: str, row: dict) -> str:
        return f"{name:<16}" + "".join(f"{row[k]:>8.2%}" for k in ("ua", "ra", "ta", "mia_efficacy", "avg_gap"))

    print(f"{'method':<16}{'UA':>8}{'RA':>8}{'TA':>8}{'MIA':>8}{'gap':>8}{'seconds':>10}{'speed-up':>10}")
    for name, row in result.rows.items():
        print(f"{metrics(name, row)}{row['seconds']:>10.1f}{row['speedup']:>9.1f}x")
    if result.original is not None:
        print(f"{metrics('(original)', result.original)}   no unlearning, for scale")
    if result.noise_floor is not None:
        row = result.noise_floor
        print(f"{metrics('(retrain again)', row)}{row['seconds']:>10.1f}   seed {row['seed']}: the noise floor")
    for name, reason in result.skipped.items():
        print(f"{name:<16}skipped: {reason}")
    return 0


def _parse_defense(text: str) -> tuple[str, float]:
    kind, _, strength = text.partition(":")
    try:
        return kind.strip(), float(strength or 0)
    except ValueError:
        raise AuditInputError(f"--defense takes KIND:STRENGTH, e.g. noise:0.01, not '{text}'.") from None


def cmd_invert(args: argparse.Namespace) -> int:
    import numpy as np

    from .data import DatasetSpec, load_dataset
    from .forget import read_request
    from .inversion import InversionConfig, apply_defense, invert, load_recorded_base

    original, record = _load(args.original, args)
    _classifier_only(record, "invert")
    unlearned, unlearned_record = _load(args.unlearned, args)
    request = read_request(args.forget)
    data = load_dataset(DatasetSpec.from_dict(record.dataset))
    method = (unlearned_record.unlearning or {}).get("method")
    wants_base = args.base or args.setting == "exact" or (args.setting == "auto" and method == "retrain" and record.recipe.get("init"))
    base = load_recorded_base(record, args.base) if wants_base else None
    if args.defense and args.defense_sweep:
        raise AuditInputError("Give --defense (one defended attack) or --defense-sweep (several), not both.")
    if args.defense:
        kind, strength = _parse_defense(args.defense)
        retain = np.setdiff1d(record.train_indices, request.indices)
        unlearned = apply_defense(unlearned, kind, strength, dataset=data, retain_idx=retain, seed=args.seed)
    given = {"steps": args.steps, "restarts": args.restarts, "tv_weight": args.tv_weight}
    config = InversionConfig(**{k: v for k, v in given.items() if v is not None}, label="known" if args.known_label else "inferred",
                             label_method=args.label_method, seed=args.seed)
    if args.defense_sweep:
        return _defense_sweep(args, original, unlearned, request, record, unlearned_record, data, base, config)
    result = _with_bar("invert", invert, original, unlearned, request.indices, record=record, unlearned_record=unlearned_record,
                       dataset=data, base=base, setting=args.setting, config=config, device=args.device)
    path = result.write(args.out)
    names = result.class_names
    print(f"wrote {path} and {len(result.samples)} PNG(s); setting: {result.setting}")
    print(f"{'index':>8} {'true':>12} {'inferred':>12} {'MSE':>8} {'PSNR':>7} {'SSIM':>7} {'rank':>9}")
    for s in result.samples:
        print(f"{s['index']:>8} {names[s['true_label']]:>12} {names[s['inferred_label']]:>12} {s['mse']:>8.4f} {s['psnr']:>7.2f} "
              f"{s['ssim']:>7.3f} {s['rank']:>4}/{s['class_size']:<4}")
    print(f"rank 1: {result.top1_share:.0%} of samples; label inference accuracy {result.label_accuracy:.0%}; "
          f"{result.seconds['label_inference'] + result.seconds['feature_recovery']:.1f} s")
    return 0


def _defense_sweep(args, original, unlearned, request, record, unlearned_record, data, base, config) -> int:
    """``invert --defense-sweep``: the attack against each defended copy; writes ``defenses.json``."""
    import json

    from .case import atomic_write_text
    from .inversion import defense_sweep

    grid: dict[str, list[float]] = {"none": [0.0]}
    for item in (t for t in args.defense_sweep.split(",") if t.strip()):
        kind, strength = _parse_defense(item)
        grid.setdefault(kind, []).append(strength)
    rows = _with_bar("defenses", defense_sweep, original, unlearned, request.indices, record=record, unlearned_record=unlearned_record,
                     grid=grid, dataset=data, base=base, setting=args.setting, config=config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = atomic_write_text(out / "defenses.json", json.dumps({"steps": config.steps, "restarts": config.restarts, "rows": rows},
                                                               indent=1, allow_nan=False))
    print(f"wrote {path}")
    print(f"{'defense':<10}{'strength':>10}{'test acc':>10}{'rank 1':>8}{'labels':>8}{'SSIM':>8}")
    for r in rows:
        print(f"{r['defense']:<10}{r['strength']:>10g}{r['test_acc']:>10.2%}{r['top1_share']:>8.0%}{r['label_accuracy']:>8.0%}{r['ssim']:>8.3f}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .forget import read_request
    from .neurons import explain_models, get_labeller

    paths = {"original": args.original, "unlearned": args.unlearned}
    if args.retrained:
        paths["retrained"] = args.retrained
    models = {role: _load(path, args) for role, path in paths.items()}
    _classifier_only(models["original"][1], "explain")
    request = read_request(args.forget)
    from .neurons.foundation import labeller_options

    def build(name: str):
        return get_labeller(name, **(labeller_options(args.clip_checkpoint, args.clip_model, args.vocabulary, args.device)
                                     if name == "open_clip" else {}))

    labeller = build(args.labeller)
    compare = build(args.compare_labeller) if args.compare_labeller else None
    result = _with_bar("explain", explain_models, models, request.indices, layers=args.layer, labeller=labeller,
                       compare_labeller=compare, max_samples=args.max_samples, seed=args.seed)
    path = result.write(args.out)
    data = result.data
    counts = data["forgotten_concept_neurons"]
    print(f"wrote {path} and {len(data['heatmaps'])} heatmap PNG(s); layers: {', '.join(layer['name'] for layer in data['layers'])}")
    print(f"final-layer label agreement (original): {data['final_layer_label_agreement']:.0%}")
    if data["label_agreement"]:
        from .neurons.foundation import agreement_lines

        print(*agreement_lines(data), sep="\n")
    if counts["classes"]:
        extra = f", retrained {counts['retrained']}" if counts.get("retrained") is not None else ""
        print(f"neurons labelled {'/'.join(counts['classes'])}: before {counts['before']}, after {counts['after']}{extra}")
    else:
        print(f"forgotten-concept neurons: not counted ({counts['note']})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo_lines, run_demo

    summary = _with_bar("demo", run_demo, args.out)
    print("\n".join(demo_lines(summary, Path(args.out))))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .diffusion_cli import run_generate

    return run_generate(args, _load(args.model, args), _with_bar)


def _classifier_only(record, command: str) -> None:
    if record.arch == "ddpm":
        raise AuditInputError(f"'{command}' covers classifiers only; this is a diffusion model (audit it, or sample it with 'generate').")


def cmd_list(args: argparse.Namespace) -> int:
    from .catalog import CATALOG  # the registries' names without importing them (and torch)

    for heading, names in CATALOG.items():
        print(f"{heading}:")
        for name in names:
            print(f"  {name}")
    return 0


def _report_command(name: str):
    """A command implemented in :mod:`mu_core.report.commands`, imported only when it runs."""

    def run(args: argparse.Namespace) -> int:
        from .report import commands

        return getattr(commands, name)(args)

    return run


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    return serve(port=args.port, address=args.address, secrets_file=args.secrets, headless=args.headless)


def _threats_command(name: str, args: argparse.Namespace) -> int:
    from .threats import commands

    return getattr(commands, name)(args)


def cmd_cluster(args: argparse.Namespace) -> int:
    from .executor import cmd_cluster as show

    return show(args)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m mu_core", description="MU Audit: audit machine unlearning of image classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def data_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
        p.add_argument("--dataset", required=required, help="dataset name (see 'list'); for plain state dicts, the dataset it was trained on")
        p.add_argument("--data-root", help="folder (or zip) holding the dataset's files")

    def device_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", help="cuda, mps or cpu (default: the first available)")

    def executor_arg(p: argparse.ArgumentParser) -> None:
        from .executor import EXECUTORS  # stdlib only: the quick commands stay without torch

        p.add_argument("--executor", choices=list(EXECUTORS),
                       help="where independent jobs (reference models, retrains, runs) go: this process, worker processes "
                            "(one per core) or Ray (default: MU_AUDIT_EXECUTOR, else inline, and worker processes for "
                            "reference models when they pay; Ray's cluster: RAY_ADDRESS, else a local Ray)")
        p.add_argument("--job-cpus", type=float, metavar="N", help="CPUs (and torch threads) per job (default: this process's threads)")

    p = sub.add_parser("train", help="train a model on a dataset")
    data_args(p, required=True)
    p.add_argument("--arch", required=True, help="architecture (see 'list')")
    p.add_argument("--epochs", type=int, help="training epochs (default depends on the data size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, help="train on a seeded random subset of this many samples")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--init", metavar="BASE", help="start from this base model's weights (fine-tuning; retrain repeats it from the same base)")
    p.add_argument("--sisa", metavar="SxR", help="train a SISA ensemble of S shards x R slices (unlearn it with --method sisa)")
    p.add_argument("--sisa-aggregate", choices=["mean", "vote"], default="mean", help="how SISA shards vote")
    p.add_argument("--timesteps", type=int, help="--arch ddpm: diffusion steps T (default 200)")
    p.add_argument("--out", required=True, help="output .safetensors file")
    device_arg(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("forget", help="write a forget request")
    choice = p.add_mutually_exclusive_group(required=True)
    choice.add_argument("--random", type=int, metavar="K", help="K random training samples")
    choice.add_argument("--class", dest="cls", metavar="C", help="a class (index or name)")
    choice.add_argument("--indices", metavar="FILE", help="explicit indices: one per line, or a CSV with an 'index' column")
    p.add_argument("--share", type=float, default=1.0, help="with --class: the share of the class to forget")
    p.add_argument("--model", help="draw from this model's training samples")
    p.add_argument("--arch", help="architecture of a plain state-dict --model")
    data_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output file (.txt, .csv or .json)")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("unlearn", help="unlearn a forget request from a model")
    p.add_argument("--model", required=True)
    p.add_argument("--arch", help="architecture of a plain state-dict model")
    data_args(p)
    p.add_argument("--forget", required=True, help="forget request file")
    p.add_argument("--method", required=True, help="unlearning method (see 'list')")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="a method hyper-parameter (repeatable)")
    p.add_argument("--out", required=True, help="output .safetensors file")
    device_arg(p)
    p.set_defaults(func=cmd_unlearn)

    p = sub.add_parser("audit", help="membership-inference audit of original, unlearned and retrained models")
    p.add_argument("--original", required=True)
    p.add_argument("--unlearned", required=True)
    p.add_argument("--retrained", action="append", metavar="FILE", help="an exact retrain (repeatable: several retrains with different seeds)")
    p.add_argument("--retrains", type=int, default=None, metavar="K",
                   help="the reference holds K exact retrains: the --retrained files, the rest trained with consecutive seeds "
                        "(kept and reused with --case); 0: only the files given (default 4; 0 for a diffusion model)")
    p.add_argument("--arch", help="architecture of plain state-dict models")
    data_args(p)
    p.add_argument("--forget", required=True)
    p.add_argument("--attacks", help="comma-separated attacks (default: loss,confidence,entropy,modified_entropy; see 'list')")
    p.add_argument("--reference-models", type=int, default=16, metavar="K", help="reference models for LiRA, RMIA, shadow, gradient and U-LiRA (default 16)")
    p.add_argument("--case", metavar="DIR", help="keep reference models in this folder (a case folder keeps them in its references/) and reuse them")
    p.add_argument("--method", help="the unlearning method U-LiRA and kaggle_epsilon replicate (default: the unlearned model's metadata)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="a parameter of --method (repeatable)")
    p.add_argument("--margin", type=float, default=0.1, help="equivalence margin in AUC for a 'forgotten' verdict (default 0.1)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the verdict (default 0.05)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the intervals (default 200)")
    p.add_argument("--fail-on", choices=["not_forgotten", "inconclusive", "forgotten"], help="exit with status 3 when this is the verdict")
    p.add_argument("--seed", type=int, default=0, help="seed of the non-member sampling")
    p.add_argument("--timesteps", help="diffusion attacks: comma-separated timesteps to query (default: each attack's own)")
    p.add_argument("--noise-draws", type=int, help="diffusion attacks: noise draws per timestep (default 1)")
    p.add_argument("--attack-option", action="append", metavar="KEY=VALUE",
                   help="an attack option, e.g. secmi_t=20, pia_p=2, gsa_reference_models=2 (repeatable)")
    p.add_argument("--out", required=True, help="output folder for report.json, scores.csv, roc.csv and records.csv")
    device_arg(p)
    executor_arg(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("demo", help="the teaching demo: a weak method caught (not_forgotten), the retrain cleared (forgotten)")
    p.add_argument("--out", required=True, metavar="DIR", help="a new folder for the models, forget.json, audit/ and audit-retrain/")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("compare", help="run several unlearning methods on one request and compare them with retraining")
    p.add_argument("--model", required=True)
    p.add_argument("--arch", help="architecture of a plain state-dict model")
    data_args(p)
    p.add_argument("--forget", required=True)
    p.add_argument("--methods", required=True, help="comma-separated methods (retrain is always included)")
    p.add_argument("--grid", action="store_true", help="a small grid search per method, keeping the smallest Avg. Gap")
    p.add_argument("--floor", action="store_true",
                   help="retrain once more with the next seed: the Avg. Gap exact unlearning itself shows (compare.json: noise_floor)")
    p.add_argument("--repeats", type=int, default=1,
                   help="run every method (and retrain) this many times with consecutive seeds and average the metrics")
    p.add_argument("--seed", type=int, default=0, help="seed of the MIA-efficacy sampling")
    p.add_argument("--out", required=True, help="output folder for compare.json and compare.csv")
    device_arg(p)
    executor_arg(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("invert", help="unlearning inversion: reconstruct forgotten samples and their labels from the two models")
    p.add_argument("--original", required=True)
    p.add_argument("--unlearned", required=True)
    p.add_argument("--arch", help="architecture of plain state-dict models")
    data_args(p)
    p.add_argument("--forget", required=True, help="forget request file (sizes the attack and scores it)")
    p.add_argument("--steps", type=int, help="optimisation steps per restart (default 1000)")
    p.add_argument("--restarts", type=int, help="random restarts, the best final loss kept (default 4)")
    p.add_argument("--tv-weight", type=float, help="weight of the total-variation prior (default 0.01)")
    p.add_argument("--known-label", action="store_true", help="assume the attacker knows the forgotten labels (default: inferred black-box)")
    p.add_argument("--label-method", choices=["probe", "weights"], default="probe",
                   help="infer labels from black-box probes (default, the paper's) or white-box from the output layer's change (iDLG)")
    p.add_argument("--setting", choices=["auto", "approximate", "exact"], default="auto",
                   help="exact: fine-tuned original and retrained unlearned model from a base (default: auto-detected)")
    p.add_argument("--base", help="base model the original was fine-tuned from (default: the one its recipe records)")
    p.add_argument("--defense", metavar="KIND:STRENGTH", help="defend the unlearned model first: noise:STD, prune:SHARE or finetune:STEPS")
    p.add_argument("--defense-sweep", metavar="KIND:STRENGTH,...",
                   help="attack the undefended model and each listed defense (e.g. noise:0.001,prune:0.5); writes DIR/defenses.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder: a PNG per sample (forgotten | reconstruction) and inversion.json")
    device_arg(p)
    executor_arg(p)
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser("explain", help="neuron-level explanations: what unlearning changed and whether the forgotten class is still represented")
    p.add_argument("--original", required=True)
    p.add_argument("--unlearned", required=True)
    p.add_argument("--retrained")
    p.add_argument("--arch", help="architecture of plain state-dict models")
    data_args(p)
    p.add_argument("--forget", required=True, help="forget request file")
    p.add_argument("--layer", action="extend", nargs="+", metavar="NAME",
                   help="conv/linear layer(s) to explain (repeatable; default: every hidden one and the output layer)")
    p.add_argument("--labeller", default="selectivity", choices=["selectivity", "open_clip"],
                   help="how neurons are labelled (open_clip needs the package and --clip-checkpoint)")
    p.add_argument("--compare-labeller", choices=["selectivity", "open_clip"],
                   help="label every neuron a second time with this labeller and say where the two agree")
    p.add_argument("--clip-checkpoint", help="local open_clip .safetensors checkpoint for the open_clip labeller (never downloaded)")
    p.add_argument("--clip-model", default="ViT-B-32",
                   help="the checkpoint's open_clip model: a config name bundled with open_clip or a JSON config file (default ViT-B-32)")
    p.add_argument("--vocabulary", help="concept word list for the open_clip labeller, one a line (default: assets/concepts.txt)")
    p.add_argument("--max-samples", type=int, default=500, help="forget, retain and test samples used, each (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder for neurons.json, neurons.npz and heatmap PNGs")
    device_arg(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("report", help="the audit report (HTML, PDF), its evidence and a bundle, signed with --sign-key")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--case", metavar="ID", help="a saved case (under MU_AUDIT_HOME)")
    source.add_argument("--audit", metavar="DIR", help="the --out folder of an 'audit' run")
    p.add_argument("--out", required=True, help="folder for report.html, report.pdf, evidence.json and bundle.zip")
    p.add_argument("--redact", action="store_true", help="no training pixels, no raw indices: records named by a keyed hash")
    p.add_argument("--sign-key", metavar="KEY", help="Ed25519 private key (from 'keygen') that signs the bundle's manifest")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF (it is printed by headless Chromium)")
    p.set_defaults(func=_report_command("cmd_report"))

    p = sub.add_parser("keygen", help="write an Ed25519 key pair NAME.key and NAME.pub for signing bundles")
    p.add_argument("--out", required=True, metavar="NAME")
    p.set_defaults(func=_report_command("cmd_keygen"))

    p = sub.add_parser("verify", help="check a bundle: every file, the signature and the audit trail (exit 1 if not intact)")
    p.add_argument("bundle")
    p.add_argument("--public-key", metavar="PUB", help="the signer's public key (default: the one in the bundle)")
    p.set_defaults(func=_report_command("cmd_verify"))

    p = sub.add_parser("replay", help="re-run a bundle's audit and compare every number (exit 1 if any differs)")
    p.add_argument("bundle")
    p.add_argument("--out", required=True, help="folder for the extracted bundle and the replayed audit")
    p.add_argument("--public-key", metavar="PUB", help="the signer's public key (default: the one in the bundle)")
    device_arg(p)
    p.set_defaults(func=_report_command("cmd_replay"))

    p = sub.add_parser("purge", help="delete a case and everything derived from it; a receipt goes to MU_AUDIT_HOME/purge-log.jsonl")
    p.add_argument("--case", required=True, metavar="ID")
    p.set_defaults(func=_report_command("cmd_purge"))

    p = sub.add_parser("check-record", help="a data subject's answer in a (redacted) bundle, from their index and key")
    p.add_argument("bundle")
    p.add_argument("--index", required=True, type=int, help="the training index of the record")
    p.add_argument("--key", help="the data subject's key (64 hex characters)")
    p.add_argument("--secret", metavar="FILE", help="the controller's redaction.secret: also prints the subject's key to hand over")
    p.set_defaults(func=_report_command("cmd_check_record"))

    p = sub.add_parser("serve", help="start the web app: 127.0.0.1 only unless sign-in ([auth] in .streamlit/secrets.toml) is configured")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", help="listen address (default: 127.0.0.1 without sign-in, all interfaces with it)")
    p.add_argument("--secrets", help="a secrets.toml to use instead of ~/.streamlit/ and .streamlit/ ones")
    p.add_argument("--headless", action="store_true", help="do not open a browser")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("threat", help="run a threat of the Threats lab on a model (see 'list'); writes DIR/threat.json")
    p.add_argument("name", help="the threat (see 'list')")
    p.add_argument("--model", required=True, help="the model attacked (threats that poison training data retrain with its recipe)")
    p.add_argument("--arch", help="architecture of a plain state-dict model")
    data_args(p)
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="a parameter of the threat (repeatable)")
    p.add_argument("--seed", type=int, help="the threat's seed (same as --param seed=S)")
    p.add_argument("--out", required=True, help="output folder for threat.json")
    device_arg(p)
    executor_arg(p)
    p.set_defaults(func=lambda args: _threats_command("cmd_threat", args))

    p = sub.add_parser("screen", help="screen an unlearning request before running it: accept, review or reject; writes DIR/screen.json")
    p.add_argument("--model", required=True)
    p.add_argument("--arch", help="architecture of a plain state-dict model")
    data_args(p)
    p.add_argument("--forget", help="the request: a forget file of indices")
    p.add_argument("--samples", metavar="NPZ", help="the request with its content: arrays index, x, y (e.g. a threat's request.npz)")
    p.add_argument("--method", default="neggrad", help="the unlearning method of the dry run (default neggrad)")
    p.add_argument("--tolerance", type=float, default=0.05, help="largest test-accuracy drop the dry run accepts (default 0.05)")
    p.add_argument("--threshold", type=float, default=3.0, help="largest z-score of the gradient influence accepted (default 3)")
    p.add_argument("--null-requests", type=int, default=20, help="random requests the influence is compared with (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder for screen.json")
    device_arg(p)
    p.set_defaults(func=lambda args: _threats_command("cmd_screen", args))

    p = sub.add_parser("generate", help="sample images per class from a diffusion model (arch ddpm) into a PNG grid")
    p.add_argument("--model", required=True)
    p.add_argument("--per-class", type=int, default=8, help="samples per class (default 8)")
    p.add_argument("--classes", help="comma-separated classes (indices or names; default: all)")
    p.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim", help="ddim (fast, deterministic) or ddpm (all T steps)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder for grid.png, samples.npz and samples.json")
    device_arg(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("cluster", help="where independent jobs run: the executor and the Ray cluster's nodes, CPUs and GPUs (JSON)")
    executor_arg(p)
    p.add_argument("--address", help="a Ray cluster's address (default: RAY_ADDRESS, else a local Ray started on demand)")
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser("list", help="list datasets, architectures, methods, attacks and threats")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if hasattr(args, "executor") and (args.executor or getattr(args, "job_cpus", None) or getattr(args, "address", None)):
            from .executor import cli_executor

            with cli_executor(args.executor, getattr(args, "address", None), getattr(args, "job_cpus", None)):
                return int(args.func(args))
        return int(args.func(args))
    except AuditInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure: one line unless debugging
        if os.environ.get("MU_AUDIT_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set MU_AUDIT_DEBUG=1 for details)", file=sys.stderr)
        return 1


__all__ = ["build_parser", "main"]
