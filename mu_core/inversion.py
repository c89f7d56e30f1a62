"""Unlearning inversion: reconstruct forgotten samples and their labels from two model versions.

Hu, Wang, Dong, Xue, "Learn What You Want to Unlearn: Unlearning Inversion Attacks against
Machine Unlearning", IEEE S&P 2024. An attacker holding the original model ``theta_o`` and the
unlearned model ``theta_u`` learns about the forgotten samples in two ways:

* **Feature recovery (white-box).** The parameter difference is a proxy for the forgotten
  samples' loss gradient. Gradient ascent moves ``theta_u = theta_o + lr * grad``, so the target
  direction is ``theta_u - theta_o``. In the paper's exact-unlearning setting the original is a
  public base ``theta_b`` fine-tuned on ``D_u`` (``n`` samples) and the unlearned model is the same
  base fine-tuned on ``D_u`` minus the ``k`` forgotten samples with the same recipe and seed; for
  one full-batch descent step ``(n - k)(theta_u - theta_b) - n(theta_o - theta_b) = lr * sum of the
  forgotten gradients``, the same sign. Dummy inputs are optimised so that their loss gradient
  at the original weights points the same way: ``1 - cosine`` over all parameters plus a
  total-variation prior, signed gradient steps with AdamW, pixels clamped to [0, 1], the
  learning rate halved at 3/8, 5/8 and 7/8 of the steps, several restarts keeping the best final
  loss. The label is the black-box inferred one (or the true one, if the attacker is assumed to
  know it).
* **Label inference (black-box).** Per class, probing inputs are found by zeroth-order
  optimisation (ZOO: finite differences along random directions, signed steps) against the
  original until it is highly confident; both models are queried on them, and the class whose
  probes lost most confidence is the inferred removed label (the top-K for K samples).
* **Label read (white-box, optional, ``label_method="weights"``).** Not the paper's label attack
  but the iDLG observation (Zhao, Mopuri, Bilen 2020, "iDLG: Improved Deep Leakage from
  Gradients"): for one sample's cross-entropy, the output layer's gradient row ``c`` is
  ``(p_c - y_c) * [h, 1]`` (``h`` >= 0 the ReLU features, 1 for the bias), negative only in the
  true class. The target direction holds that gradient, so the class whose output row (weights
  plus bias) moved most negatively in the target is the forgotten label (top-K for K samples).
  It costs no queries; the black-box probes stay the default, as in the paper.

Metrics: MSE, PSNR and SSIM (torchmetrics' SSIM, data range 1.0; the window is fitted to the
image: Wang et al.'s 11x11 Gaussian, sigma 1.5, for images at least 22 pixels wide, a 3x3
uniform window for smaller ones such as 8x8 digits), label-inference accuracy, and the rank of
the true forgotten sample among all training samples of its class by MSE to the reconstruction
(rank 1 = the attack singled it out). "All training samples" are those of the dataset's whole
training split, so a model trained (or a base pre-trained) on a subset is held to the same bar.

Deviations from the paper, for a CPU budget: 1,000 steps x 4 restarts by default instead of
10,000 x 5; 10 probes per class found with at most 40 ZOO steps of 10 random directions each.
Several forgotten samples are reconstructed jointly (their gradients summed); for scoring,
reconstructions are paired with the true samples by the assignment of least total MSE
(the attacker does not know the pairing; the evaluation does).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._types import Progress, report, sub_progress
from .errors import AuditInputError

__all__ = [
    "DEFENSES",
    "LABEL_METHODS",
    "SETTINGS",
    "InversionConfig",
    "InversionResult",
    "InversionSnapshot",
    "LabelInference",
    "apply_defense",
    "defense_sweep",
    "find_probes",
    "image_metrics",
    "infer_labels",
    "invert",
    "output_layer_label_scores",
    "rank_in_class",
    "recover_features",
    "ssim_window",
    "target_direction",
]

#: What each setting assumes about how the unlearned model was made.
SETTINGS = {
    "approximate": "approximate unlearning (e.g. gradient ascent, fine-tuning on the retain set): the plain parameter "
    "difference theta_u - theta_o stands for the forgotten samples' gradient",
    "exact": "exact unlearning in the fine-tuning setting: original and unlearned model were fine-tuned from the same "
    "base with the same recipe and seed, with and without the forgotten samples; their gradient is recovered from the "
    "difference of the two fine-tuning updates weighted by the set sizes",
}
#: The defenses of the paper, applied to the unlearned model: what ``strength`` means for each.
DEFENSES = {
    "none": "no defense",
    "noise": "Gaussian noise of this standard deviation added to every unlearned parameter",
    "prune": "this share of each unlearned weight tensor's smallest-magnitude entries set to zero",
    "finetune": "this many SGD steps (lr 0.01, batch 64) on the retain set after unlearning",
}
#: How forgotten labels can be inferred (``InversionConfig.label_method``).
LABEL_METHODS = {
    "probe": "black-box: ZOO-found probes per class, the class whose probes lost most confidence (the paper's)",
    "weights": "white-box: the class whose output-layer row (weights plus bias) moved most negatively in the target "
    "direction (iDLG's observation)",
}
MAX_SAMPLES = 128


@dataclass(frozen=True)
class InversionConfig:
    """The attack's budget and priors. ``label`` is ``"inferred"`` (black-box, the default) or
    ``"known"`` (the attacker is assumed to know the forgotten labels). ``label_method`` says how
    labels are inferred: ``"probe"`` (black-box ZOO probes, the paper's, the default) or
    ``"weights"`` (white-box read of the output layer's row in the target direction, iDLG-style)."""

    steps: int = 1000
    restarts: int = 4
    lr: float = 0.04
    tv_weight: float = 1e-2
    label: str = "inferred"
    label_method: str = "probe"
    probes_per_class: int = 10
    zoo_steps: int = 40
    zoo_queries: int = 10
    zoo_sigma: float = 0.05
    zoo_lr: float = 0.05
    probe_confidence: float = 0.9
    snapshot_every: int = 25
    seed: int = 0

    def validate(self) -> InversionConfig:
        if self.steps < 1 or self.restarts < 1:
            raise AuditInputError("The inversion needs at least one step and one restart.")
        if self.lr <= 0 or self.tv_weight < 0:
            raise AuditInputError("The inversion's learning rate must be positive and its TV weight not negative.")
        if self.label not in ("inferred", "known"):
            raise AuditInputError(f"Label mode '{self.label}' is unknown; choose inferred or known.")
        if self.label_method not in LABEL_METHODS:
            raise AuditInputError(f"Label method '{self.label_method}' is unknown; choose {' or '.join(LABEL_METHODS)}.")
        if self.probes_per_class < 1 or self.zoo_steps < 0 or self.zoo_queries < 1:
            raise AuditInputError("Label inference needs at least one probe per class and one query direction.")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class InversionSnapshot:
    """A live view of feature recovery: the current dummies (``K x C x H x W``, in [0, 1]) and
    the cosine loss of every step so far in this restart."""

    restart: int
    restarts: int
    step: int
    steps: int
    images: np.ndarray
    losses: list[float]


Snapshot = Callable[[InversionSnapshot], None]


# ---------------------------------------------------------------- the target direction


def _flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).float().cpu() for p in model.parameters()])


def target_direction(
    original: nn.Module,
    unlearned: nn.Module,
    *,
    base: nn.Module | None = None,
    n_train: int | None = None,
    n_forget: int | None = None,
) -> torch.Tensor:
    """The direction the forgotten samples' summed loss gradient (at the original) points in.

    Without ``base``: ``theta_u - theta_o`` (approximate unlearning). With ``base`` (the exact
    fine-tuning setting): ``(n - k)(theta_u - theta_b) - n(theta_o - theta_b)`` with ``n`` the
    original's fine-tuning set size and ``k`` the number of forgotten samples.
    """
    theta_o, theta_u = _flat_params(original), _flat_params(unlearned)
    if theta_o.shape != theta_u.shape:
        raise AuditInputError("The original and the unlearned model have different architectures; the attack needs two versions of one model.")
    if base is None:
        return theta_u - theta_o
    if not n_train or n_forget is None or not 0 < n_forget < n_train:
        raise AuditInputError("The exact setting needs the fine-tuning set size and a forget set smaller than it.")
    theta_b = _flat_params(base)
    if theta_b.shape != theta_o.shape:
        raise AuditInputError("The base model does not have the original's architecture.")
    return (n_train - n_forget) * (theta_u - theta_b) - n_train * (theta_o - theta_b)


# ---------------------------------------------------------------- label inference (black-box)


@dataclass(frozen=True)
class LabelInference:
    """``change[c]``: mean confidence in class ``c`` of class ``c``'s probes, unlearned minus
    original (negative: lost confidence). ``ranking``: classes, most confidence lost first."""

    change: np.ndarray
    ranking: np.ndarray
    probe_confidence: np.ndarray
    queries: int

    def top(self, k: int) -> list[int]:
        """The ``k`` inferred labels (classes repeat, most likely first, when ``k`` exceeds the classes)."""
        order = [int(c) for c in self.ranking]
        return [order[i % len(order)] for i in range(k)]


@torch.no_grad()
def _confidence(model: nn.Module, x: torch.Tensor, classes: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    out = []
    for i in range(0, len(x), batch):
        probs = F.softmax(model(x[i : i + batch]).float(), dim=1)
        out.append(probs.gather(1, classes[i : i + batch, None]).squeeze(1))
    return torch.cat(out)


@torch.no_grad()
def find_probes(
    model: nn.Module,
    in_shape: tuple[int, ...],
    num_classes: int,
    config: InversionConfig,
    *,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Probing inputs per class by zeroth-order optimisation against ``model`` (queries only).

    Each probe starts as uniform noise and takes signed steps along a finite-difference estimate
    of the gradient of its class's log-confidence (``zoo_queries`` random Gaussian directions,
    two queries each), until the model gives it ``probe_confidence`` or ``zoo_steps`` are spent.
    Returns ``(probes, classes, queries used)``.
    """
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(config.seed + 7919)
    n = config.probes_per_class
    classes = torch.arange(num_classes).repeat_interleave(n).to(device)
    x = torch.rand((len(classes), *in_shape), generator=gen).to(device)
    dim = int(np.prod(in_shape))
    queries = len(x)
    q, sigma = config.zoo_queries, config.zoo_sigma

    def log_conf(inputs: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(model(inputs).float(), dim=1).gather(1, cls[:, None]).squeeze(1)

    for step in range(config.zoo_steps):
        active = torch.nonzero(log_conf(x, classes).exp() < config.probe_confidence).squeeze(1)
        queries += len(x)
        if len(active) == 0:
            break
        xa, ca = x[active], classes[active]
        u = torch.randn((q, len(active), dim), generator=gen).reshape(q * len(active), *in_shape).to(device)
        xr = xa.repeat(q, *([1] * len(in_shape)))
        cr = ca.repeat(q)
        diff = log_conf((xr + sigma * u).clamp(0, 1), cr) - log_conf((xr - sigma * u).clamp(0, 1), cr)
        queries += 2 * len(xr)
        grad = (diff[:, None] * u.reshape(len(xr), -1)).reshape(q, len(active), dim).mean(0) / (2 * sigma)
        x[active] = (xa + config.zoo_lr * grad.sign().reshape(xa.shape)).clamp(0, 1)
        report(progress, (step + 1) / config.zoo_steps, f"Label inference: probing step {step + 1}/{config.zoo_steps}, {len(active)} probes not yet confident")
    return x, classes, queries


def infer_labels(
    original: nn.Module,
    unlearned: nn.Module,
    in_shape: tuple[int, ...],
    num_classes: int,
    config: InversionConfig | None = None,
    *,
    probes: tuple[torch.Tensor, torch.Tensor, int] | None = None,
    progress: Progress | None = None,
) -> LabelInference:
    """Black-box label inference: query both models on every class's probes; the class whose
    probes lost most confidence (``argmin`` of the mean change) is the removed label.

    ``probes`` (from :func:`find_probes` on the same original) may be reused across requests.
    """
    config = (config or InversionConfig()).validate()
    x, classes, queries = probes if probes is not None else find_probes(original, in_shape, num_classes, config, progress=progress)
    unlearned.eval()
    device = next(original.parameters()).device
    x, classes = x.to(device), classes.to(device)
    before = _confidence(original, x, classes).cpu()
    after = _confidence(unlearned, x, classes).cpu()
    classes = classes.cpu()
    change = torch.zeros(num_classes).index_add_(0, classes, after - before) / torch.bincount(classes, minlength=num_classes).clamp(min=1)
    ranking = np.argsort(change.numpy(), kind="stable")
    probe_conf = torch.zeros(num_classes).index_add_(0, classes, before) / torch.bincount(classes, minlength=num_classes).clamp(min=1)
    return LabelInference(change.numpy(), ranking, probe_conf.numpy(), queries + 2 * len(x))


def output_layer_label_scores(model: nn.Module, target: torch.Tensor, num_classes: int) -> np.ndarray:
    """White-box label read (iDLG-style): per class, the sum of the output layer's row (weights
    plus bias) of ``target`` (a flat direction over ``model.parameters()``, e.g. from
    :func:`target_direction`). For one sample's cross-entropy gradient row ``c`` is
    ``(p_c - y_c) * [h, 1]`` with ``h >= 0``, so the forgotten class has the most negative score:
    ``np.argsort(scores)`` ranks the classes, most likely first. The output layer is the last
    ``nn.Linear`` with ``num_classes`` outputs."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not heads:
        raise AuditInputError(f"The model has no linear output layer with {num_classes} outputs to read the label from.")
    head = heads[-1]
    offsets, start = {}, 0
    for p in model.parameters():
        offsets[id(p)] = (start, p.numel())
        start += p.numel()
    if target.numel() != start:
        raise AuditInputError("The parameter difference does not fit the original model.")
    target = target.detach().float().cpu()
    begin, size = offsets[id(head.weight)]
    scores = target[begin : begin + size].reshape(num_classes, -1).sum(1)
    if head.bias is not None:
        begin, size = offsets[id(head.bias)]
        scores = scores + target[begin : begin + size]
    return scores.numpy().astype(np.float64)


# ---------------------------------------------------------------- feature recovery (white-box)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (anisotropic TV)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


@dataclass(frozen=True)
class FeatureRecovery:
    """The best restart's dummies, every restart's per-step cosine loss and final loss."""

    images: np.ndarray
    losses: list[list[float]]
    final_losses: list[float]
    best_restart: int


def recover_features(
    original: nn.Module,
    target: torch.Tensor,
    labels: list[int],
    in_shape: tuple[int, ...],
    config: InversionConfig | None = None,
    *,
    progress: Progress | None = None,
    snapshot: Snapshot | None = None,
) -> FeatureRecovery:
    """Dummies whose summed cross-entropy gradient at ``original`` aligns with ``target``.

    Loss: ``1 - cos(grad, target)`` over all parameters ``+ tv_weight * TV``; signed gradients,
    AdamW (lr ``config.lr``), halved at 3/8, 5/8, 7/8 of the steps; pixels clamped to [0, 1];
    ``restarts`` random starts, the one with the lowest final loss kept.
    """
    config = (config or InversionConfig()).validate()
    model = original.eval()
    params = [p for p in model.parameters()]
    if target.numel() != sum(p.numel() for p in params) or not torch.isfinite(target).all():
        raise AuditInputError("The parameter difference does not fit the original model.")
    if float(target.norm()) == 0.0:
        raise AuditInputError("The unlearned model is identical to the original: there is no difference to invert.")
    device = params[0].device
    target = target.to(device)
    y = torch.as_tensor(labels, dtype=torch.long, device=device)
    milestones = [int(config.steps * f) for f in (3 / 8, 5 / 8, 7 / 8)]
    best: tuple[float, np.ndarray, int] | None = None
    histories: list[list[float]] = []
    finals: list[float] = []
    total = config.steps * config.restarts
    for restart in range(config.restarts):
        gen = torch.Generator().manual_seed(config.seed * 1000 + restart)
        x = torch.rand((len(labels), *in_shape), generator=gen).to(device).requires_grad_(True)
        optimizer = torch.optim.AdamW([x], lr=config.lr)
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.5)
        history: list[float] = []
        for step in range(config.steps + 1):
            grads = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), params, create_graph=True)
            cosine_loss = 1 - F.cosine_similarity(torch.cat([g.reshape(-1) for g in grads]), target, dim=0)
            loss = cosine_loss + config.tv_weight * total_variation(x)
            if step == config.steps:  # the final loss, at the final (clamped) dummies
                finals.append(float(loss.detach()))
                history.append(float(cosine_loss.detach()))
                break
            (x_grad,) = torch.autograd.grad(loss, [x])
            history.append(float(cosine_loss.detach()))
            x.grad = x_grad.sign()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                x.clamp_(0, 1)
            done = restart * config.steps + step + 1
            if snapshot is not None and ((step + 1) % config.snapshot_every == 0 or step + 1 == config.steps):
                snapshot(InversionSnapshot(restart, config.restarts, step + 1, config.steps, x.detach().cpu().numpy().copy(), list(history)))
            if done % max(1, total // 200) == 0:
                report(progress, done / total, f"Restart {restart + 1}/{config.restarts}, step {step + 1}/{config.steps}, cosine loss {float(cosine_loss.detach()):.4f}")
        histories.append(history)
        if best is None or finals[-1] < best[0]:
            best = (finals[-1], x.detach().cpu().numpy().copy(), restart)
    assert best is not None
    return FeatureRecovery(best[1], histories, finals, best[2])


# ---------------------------------------------------------------- metrics


def ssim_window(height: int, width: int) -> dict[str, Any]:
    """The SSIM window fitted to the image size (torchmetrics arguments plus a description)."""
    if min(height, width) >= 22:
        return {"gaussian_kernel": True, "sigma": 1.5, "kernel_size": 11, "describe": "11x11 Gaussian window, sigma 1.5, data range 1.0"}
    return {"gaussian_kernel": False, "sigma": 1.5, "kernel_size": 3, "describe": "3x3 uniform window, data range 1.0"}


def image_metrics(reconstruction: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> dict[str, float]:
    """MSE, PSNR (dB, data range 1.0; ``inf`` for identical images) and SSIM of one ``C x H x W`` pair."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    rec = torch.as_tensor(np.asarray(reconstruction), dtype=torch.float64)[None]
    ref = torch.as_tensor(np.asarray(truth), dtype=torch.float64)[None]
    if rec.shape != ref.shape or rec.ndim != 4:
        raise AuditInputError(f"A reconstruction of shape {tuple(rec.shape[1:])} cannot be compared with an image of shape {tuple(ref.shape[1:])}.")
    mse = float(((rec - ref) ** 2).mean())
    psnr = float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))
    window = ssim_window(*ref.shape[-2:])
    ssim = structural_similarity_index_measure(
        rec, ref, gaussian_kernel=window["gaussian_kernel"], sigma=window["sigma"], kernel_size=window["kernel_size"], data_range=1.0
    )
    return {"mse": mse, "psnr": psnr, "ssim": float(ssim)}


def rank_in_class(reconstruction: np.ndarray, true_index: int, candidates: np.ndarray, x_train: torch.Tensor) -> int:
    """Rank (1 = closest) of training sample ``true_index`` among ``candidates`` (training
    indices, ``true_index`` among them) by MSE to ``reconstruction``; ties count against it."""
    candidates = np.asarray(candidates, dtype=np.int64)
    rec = torch.as_tensor(np.asarray(reconstruction), dtype=torch.float32).reshape(1, -1)
    dist = ((x_train[torch.from_numpy(candidates)].reshape(len(candidates), -1).float() - rec) ** 2).mean(1)
    own = float(((x_train[int(true_index)].reshape(1, -1).float() - rec) ** 2).mean())
    return int((dist < own).sum()) + int(((dist == own) & (torch.from_numpy(candidates) != int(true_index))).sum()) + 1


def _pairing(reconstructions: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """``pair[i]``: the reconstruction scored against true sample ``i`` (least total MSE)."""
    if len(truths) == 1:
        return np.zeros(1, dtype=np.int64)
    from scipy.optimize import linear_sum_assignment

    cost = ((truths.reshape(len(truths), 1, -1) - reconstructions.reshape(1, len(reconstructions), -1)) ** 2).mean(-1)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)].astype(np.int64)


def _assign_labels(true_labels: list[int], inferred: list[int]) -> list[int]:
    """Give each sample one inferred label: its true label while the inferred multiset still
    holds it, else the next unused inferred label (so accuracy = multiset overlap / K)."""
    left = list(inferred)
    out: list[int | None] = []
    for label in true_labels:
        if label in left:
            left.remove(label)
            out.append(label)
        else:
            out.append(None)
    return [label if label is not None else left.pop(0) for label in out]


# ---------------------------------------------------------------- the attack end to end


@dataclass(frozen=True, eq=False)
class InversionResult:
    """The attack's outcome. ``samples`` follow the forget request's order; ``reconstructions``
    and ``truths`` are ``K x C x H x W`` arrays in that order."""

    setting: str
    samples: list[dict]
    label_accuracy: float
    label_method: str
    label_accuracy_by_method: dict
    weight_label_scores: list[float]
    top1_share: float
    inferred_labels: list[int]
    label_change: list[float]
    loss_history: list[list[float]]
    best_restart: int
    config: dict
    seconds: dict
    class_names: tuple[str, ...]
    ssim_window: str
    reconstructions: np.ndarray = field(repr=False)
    truths: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "paper": "Hu, Wang, Dong, Xue: Learn What You Want to Unlearn, IEEE S&P 2024",
            "setting": self.setting,
            "setting_describe": SETTINGS[self.setting],
            "samples": [{k: _finite(v) for k, v in s.items()} for s in self.samples],
            "label_accuracy": self.label_accuracy,
            "label_method": self.label_method,
            "label_method_describe": LABEL_METHODS[self.label_method],
            "label_accuracy_by_method": self.label_accuracy_by_method,
            "top1_share": self.top1_share,
            "mean_mse": _finite(float(np.mean([s["mse"] for s in self.samples]))),
            "mean_psnr": _finite(float(np.mean([s["psnr"] for s in self.samples]))),
            "mean_ssim": _finite(float(np.mean([s["ssim"] for s in self.samples]))),
            "inferred_labels": self.inferred_labels,
            "label_confidence_change": self.label_change,
            "weight_label_scores": self.weight_label_scores,
            "class_names": list(self.class_names),
            "ssim_window": self.ssim_window,
            "loss_history": self.loss_history,
            "best_restart": self.best_restart,
            "config": self.config,
            "seconds": self.seconds,
        }

    def write(self, out_dir: str | Path) -> Path:
        """``inversion.json``, ``reconstructions.npz`` and one PNG per sample (forgotten | reconstruction)."""
        from .case import atomic_write_bytes, atomic_write_json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for sample, rec, truth in zip(self.samples, self.reconstructions, self.truths, strict=True):
            atomic_write_bytes(out / sample["png"], pair_png(truth, rec))
        buffer = _npz_bytes(reconstructions=self.reconstructions, truths=self.truths, indices=np.array([s["index"] for s in self.samples]))
        atomic_write_bytes(out / "reconstructions.npz", buffer)
        return atomic_write_json(out / "inversion.json", self.to_dict())


def _finite(value: Any) -> Any:
    """``None`` for a non-finite float (PSNR of a perfect reconstruction), so the JSON stays valid."""
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def to_uint8_image(image: np.ndarray, scale: int | None = None) -> np.ndarray:
    """A ``C x H x W`` float image in [0, 1] as an ``H x W`` (grey) or ``H x W x 3`` uint8 array,
    enlarged ``scale`` times (default: to about 64 pixels) without smoothing."""
    arr = np.clip(np.asarray(image, dtype=np.float64), 0, 1)
    arr = (arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)) * 255
    scale = scale or max(1, 64 // max(arr.shape[:2]))
    arr = np.repeat(np.repeat(arr.round().astype(np.uint8), scale, axis=0), scale, axis=1)
    return arr


def pair_png(truth: np.ndarray, reconstruction: np.ndarray) -> bytes:
    """PNG bytes: the forgotten sample, a white gap, the reconstruction."""
    import io

    from PIL import Image

    left, right = to_uint8_image(truth), to_uint8_image(reconstruction)
    gap = np.full((left.shape[0], max(2, left.shape[1] // 16), *left.shape[2:]), 255, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate([left, gap, right], axis=1)).save(buffer, format="PNG")
    return buffer.getvalue()


def _resolve_setting(setting: str, original_record, unlearned_record, base) -> str:
    if setting not in ("auto", *SETTINGS):
        raise AuditInputError(f"Setting '{setting}' is unknown; choose auto, approximate or exact.")
    if setting == "auto":
        method = (unlearned_record.unlearning or {}).get("method") if unlearned_record is not None else None
        exact = method == "retrain" and bool(original_record.recipe.get("init")) and base is not None
        return "exact" if exact else "approximate"
    if setting == "exact" and base is None:
        raise AuditInputError("The exact setting needs the base model the original was fine-tuned from.")
    return setting


def load_recorded_base(original_record, base_path: str | Path | None = None):
    """The base model of a fine-tuned original: ``base_path``, else the recipe's recorded file
    (its sha256 checked). ``None`` when the original records no base and none is given."""
    from .models import load_model, sha256_file

    init = original_record.recipe.get("init") or {}
    path = Path(base_path) if base_path else (Path(init["path"]) if init.get("path") else None)
    if path is None:
        return None
    if not path.is_file():
        raise AuditInputError(f"The base model '{path}' the original was fine-tuned from is not there; pass it with --base.")
    if init.get("sha256") and sha256_file(path) != init["sha256"]:
        raise AuditInputError(f"'{path.name}' is not the base the original was fine-tuned from (its sha256 differs).")
    return load_model(path)[0]


def invert(
    original: nn.Module,
    unlearned: nn.Module,
    forget_indices,
    *,
    record,
    unlearned_record=None,
    dataset=None,
    base: nn.Module | None = None,
    setting: str = "auto",
    config: InversionConfig | None = None,
    probes: tuple[torch.Tensor, torch.Tensor, int] | None = None,
    progress: Progress | None = None,
    snapshot: Snapshot | None = None,
    device: torch.device | str | None = None,
) -> InversionResult:
    """Run label inference and feature recovery on the forgotten samples and score them.

    ``record`` is the original's :class:`~mu_core.models.ModelRecord` (dataset, training set);
    ``forget_indices`` are used to size the attack (the number of samples) and to score it.
    ``setting`` is ``auto`` (exact when the unlearned model was retrained, the original records
    a base it was fine-tuned from and ``base`` is given; else approximate), ``approximate`` or
    ``exact``. Each sample's ``inferred_label`` is one of the top-K inferred labels, matched to
    the true labels as a multiset (for one sample: the top-1), by ``config.label_method``; both
    reads are always made (the white-box one costs no queries) and reported per sample as
    ``probe_label`` and ``weight_label`` and overall in ``label_accuracy_by_method``.
    """
    from .data import DatasetSpec, load_dataset
    from .device import pick_device
    from .forget import validate_indices

    config = (config or InversionConfig()).validate()
    data = dataset or load_dataset(DatasetSpec.from_dict(record.dataset))
    forget_idx = validate_indices(forget_indices, record.train_indices, record.n_train_split)
    if len(forget_idx) > MAX_SAMPLES:
        raise AuditInputError(
            f"The inversion reconstructs at most {MAX_SAMPLES} forgotten samples at once (this request has {len(forget_idx)}); "
            "the paper's setting is one sample per request."
        )
    setting = _resolve_setting(setting, record, unlearned_record, base)
    device = device if isinstance(device, torch.device) else pick_device(device)
    original = copy.deepcopy(original).to(device).eval()
    unlearned = copy.deepcopy(unlearned).to(device).eval()
    in_shape, num_classes = tuple(record.in_shape), record.num_classes
    true_labels = [int(data.y_train[i]) for i in forget_idx]

    started = time.perf_counter()
    labels = infer_labels(original, unlearned, in_shape, num_classes, config, probes=probes, progress=sub_progress(progress, 0.0, 0.1))
    label_seconds = time.perf_counter() - started
    target = target_direction(original, unlearned, base=base if setting == "exact" else None,
                              n_train=len(record.train_indices), n_forget=len(forget_idx))
    weight_scores = output_layer_label_scores(original, target, num_classes)
    weight_ranking = np.argsort(weight_scores, kind="stable")
    by_method = {
        "probe": labels.top(len(forget_idx)),
        "weights": [int(weight_ranking[i % len(weight_ranking)]) for i in range(len(forget_idx))],
    }
    inferred = by_method[config.label_method]
    attack_labels = true_labels if config.label == "known" else inferred
    started = time.perf_counter()
    recovery = recover_features(original, target, attack_labels, in_shape, config, progress=sub_progress(progress, 0.1, 1.0), snapshot=snapshot)
    recovery_seconds = time.perf_counter() - started

    truths = data.x_train[torch.from_numpy(forget_idx)].numpy()
    pair = _pairing(recovery.images, truths)
    reconstructions = recovery.images[pair]
    assigned = _assign_labels(true_labels, inferred)
    assigned_by = {m: _assign_labels(true_labels, labs) for m, labs in by_method.items()}
    y_train = data.y_train.numpy()
    samples = []
    for i, index in enumerate(forget_idx):
        same_class = np.flatnonzero(y_train == true_labels[i])
        samples.append({
            "index": int(index),
            "true_label": true_labels[i],
            "inferred_label": assigned[i],
            "probe_label": assigned_by["probe"][i],
            "weight_label": assigned_by["weights"][i],
            **image_metrics(reconstructions[i], truths[i]),
            "rank": rank_in_class(reconstructions[i], int(index), same_class, data.x_train),
            "class_size": len(same_class),
            "png": f"sample_{int(index)}.png",
        })
    n = len(samples)
    return InversionResult(
        setting=setting,
        samples=samples,
        label_accuracy=sum(s["inferred_label"] == s["true_label"] for s in samples) / n,
        label_method=config.label_method,
        label_accuracy_by_method={m: sum(a[i] == true_labels[i] for i in range(n)) / n for m, a in assigned_by.items()},
        weight_label_scores=[float(v) for v in weight_scores],
        top1_share=sum(s["rank"] == 1 for s in samples) / n,
        inferred_labels=inferred,
        label_change=[float(v) for v in labels.change],
        loss_history=recovery.losses,
        best_restart=recovery.best_restart,
        config={**config.to_dict(), "device": str(device), "label_queries": labels.queries},
        seconds={"label_inference": round(label_seconds, 3), "feature_recovery": round(recovery_seconds, 3)},
        class_names=tuple(record.class_names),
        ssim_window=ssim_window(*in_shape[1:])["describe"],
        reconstructions=reconstructions,
        truths=truths,
    )


# ---------------------------------------------------------------- defenses


def apply_defense(
    model: nn.Module,
    kind: str,
    strength: float,
    *,
    dataset=None,
    retain_idx: np.ndarray | None = None,
    seed: int = 0,
) -> nn.Module:
    """A defended copy of the unlearned ``model`` (see :data:`DEFENSES`)."""
    if kind not in DEFENSES:
        raise AuditInputError(f"Defense '{kind}' is unknown; choose one of: {', '.join(DEFENSES)}.")
    if strength < 0:
        raise AuditInputError("A defense's strength cannot be negative.")
    defended = copy.deepcopy(model).cpu()
    gen = torch.Generator().manual_seed(seed)
    if kind == "noise" and strength > 0:
        with torch.no_grad():
            for p in defended.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * strength)
    elif kind == "prune" and strength > 0:
        if strength >= 1:
            raise AuditInputError("The pruned share must be below 1.")
        with torch.no_grad():
            for p in defended.parameters():
                if p.ndim > 1:
                    k = int(p.numel() * strength)
                    if k:
                        cut = p.abs().reshape(-1).kthvalue(k).values
                        p.mul_((p.abs() > cut).to(p.dtype))
    elif kind == "finetune" and strength > 0:
        from .train import TrainConfig, train_loop

        if dataset is None or retain_idx is None or len(retain_idx) == 0:
            raise AuditInputError("Fine-tuning after unlearning needs the retain set.")
        steps = int(strength)
        rng = np.random.default_rng(seed)
        take = torch.from_numpy(np.sort(rng.choice(retain_idx, size=min(len(retain_idx), 64 * steps), replace=False)))
        config = TrainConfig(epochs=1, batch_size=64, lr=0.01, optimizer="sgd", seed=seed)
        train_loop(defended, dataset.x_train[take], dataset.y_train[take], config, device=torch.device("cpu"), label="Defense: fine-tuning")
    return defended.eval()


def defense_sweep(
    original: nn.Module,
    unlearned: nn.Module,
    forget_indices,
    *,
    record,
    unlearned_record=None,
    grid: dict[str, list[float]] | None = None,
    dataset=None,
    base: nn.Module | None = None,
    setting: str = "auto",
    config: InversionConfig | None = None,
    progress: Progress | None = None,
) -> list[dict]:
    """The attack's quality against the defended model's test accuracy, per defense and strength;
    each defense is a job of :func:`~mu_core.executor.run_jobs` (in this process or on Ray)."""
    from .data import DatasetSpec, load_dataset
    from .executor import pack_model, run_jobs

    data = dataset or load_dataset(DatasetSpec.from_dict(record.dataset))
    grid = grid or {"none": [0.0], "noise": [1e-3, 1e-2], "prune": [0.2, 0.5], "finetune": [5, 20]}
    cfg = (config or InversionConfig()).validate()
    probes = find_probes(copy.deepcopy(original).cpu().eval(), tuple(record.in_shape), record.num_classes, cfg)
    shared = {"original": pack_model(original, record), "unlearned": pack_model(unlearned, unlearned_record or record),
              "forget": torch.from_numpy(np.asarray(forget_indices, dtype=np.int64)), "probe_x": probes[0], "probe_classes": probes[1],
              "x_train": data.x_train, "y_train": data.y_train, "x_test": data.x_test, "y_test": data.y_test}
    if base is not None:
        shared["base"] = pack_model(base, record)
    common = {"dataset": data.spec.to_dict(), "class_names": list(data.class_names), "config": None if config is None else config.to_dict(),
              "setting": setting, "probe_queries": int(probes[2]), "unlearned_record": unlearned_record is not None}
    jobs = [{**common, "kind": kind, "strength": s} for kind, strengths in grid.items() for s in strengths]
    return run_jobs(defense_sweep_job, jobs, shared=shared, progress=progress, label="Defense")


def defense_sweep_job(job: dict, shared, ctx) -> dict:
    """One row of :func:`defense_sweep` as an :func:`~mu_core.executor.run_jobs` job: defend the
    unlearned model (``job["kind"]``, ``job["strength"]``), attack it (on the CPU, with the shared
    probes) and score the attack and the defended model's test accuracy."""
    from .data import Dataset, DatasetSpec
    from .executor import unpack_model
    from .train import accuracy

    original, record = unpack_model(shared["original"])
    unlearned, unlearned_record = unpack_model(shared["unlearned"])
    base = unpack_model(shared["base"])[0] if "base" in shared else None
    data = Dataset(DatasetSpec.from_dict(job["dataset"]), shared["x_train"], shared["y_train"], shared["x_test"], shared["y_test"],
                   tuple(job["class_names"]))
    forget_idx = shared["forget"].numpy()
    config = None if job["config"] is None else InversionConfig(**job["config"])
    retain_idx = np.setdiff1d(record.train_indices, forget_idx)
    defended = apply_defense(unlearned, job["kind"], job["strength"], dataset=data, retain_idx=retain_idx,
                             seed=(config.seed if config else 0))
    result = invert(original, defended, forget_idx, record=record, unlearned_record=unlearned_record if job["unlearned_record"] else None,
                    dataset=data, base=base, setting=job["setting"], config=config,
                    probes=(shared["probe_x"], shared["probe_classes"], job["probe_queries"]), progress=ctx.progress, device="cpu")
    summary = result.to_dict()
    return {"defense": job["kind"], "strength": job["strength"], "test_acc": accuracy(defended, data.x_test, data.y_test), "mse": summary["mean_mse"],
            "psnr": summary["mean_psnr"], "ssim": summary["mean_ssim"], "top1_share": result.top1_share,
            "label_accuracy": result.label_accuracy}

