"""The command line's diffusion parts: audit options for diffusion attacks and ``generate``."""

from __future__ import annotations

import argparse

from .errors import AuditInputError

__all__ = ["audit_options", "run_generate"]


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def audit_options(record, attacks: list[str] | None, args: argparse.Namespace) -> tuple[list[str] | None, dict]:
    """The attacks to run (a diffusion model's defaults when none are named) and the attack
    options from ``--timesteps``, ``--noise-draws`` and ``--attack-option KEY=VALUE``."""
    from .models.ddpm import is_diffusion

    options: dict = {}
    for item in getattr(args, "attack_option", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AuditInputError(f"--attack-option takes KEY=VALUE, not '{item}'.")
        options[key.strip()] = _value(value.strip())
    if getattr(args, "timesteps", None):
        try:
            options["diffusion_timesteps"] = [int(t) for t in args.timesteps.split(",") if t.strip()]
        except ValueError:
            raise AuditInputError(f"--timesteps takes comma-separated integers, not '{args.timesteps}'.") from None
    if getattr(args, "noise_draws", None) is not None:
        if args.noise_draws < 1:
            raise AuditInputError("--noise-draws must be at least 1.")
        options["diffusion_draws"] = int(args.noise_draws)
    if is_diffusion(record) and not attacks:
        from .attacks.diffusion import DIFFUSION_ATTACKS

        attacks = list(DIFFUSION_ATTACKS)
    return attacks, options


def run_generate(args: argparse.Namespace, loaded, with_bar) -> int:
    """``generate --model M --per-class N --out DIR``: writes DIR/grid.png, samples.npz, samples.json."""
    from .generate import generate_samples, write_samples

    model, record = loaded
    classes = None
    if args.classes:
        classes = []
        for item in (c.strip() for c in args.classes.split(",") if c.strip()):
            if item in record.class_names:
                classes.append(record.class_names.index(item))
            elif item.isdigit() and int(item) < record.num_classes:
                classes.append(int(item))
            else:
                raise AuditInputError(f"Class '{item}' is neither a class index nor one of: {', '.join(record.class_names)}.")
    samples = with_bar("generate", generate_samples, model, per_class=args.per_class, class_names=record.class_names, classes=classes,
                       sampler=args.sampler, steps=args.steps, seed=args.seed, device=args.device)
    path = write_samples(samples, args.out)
    print(f"wrote {path}: {len(samples.labels)} samples ({args.per_class} per class, {args.sampler}"
          f"{f', {args.steps} steps' if args.sampler == 'ddim' else ''}), rows = classes")
    return 0
