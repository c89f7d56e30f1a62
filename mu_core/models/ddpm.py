"""A small class-conditional DDPM (Ho et al., "Denoising Diffusion Probabilistic Models", 2020).

The model predicts the noise ``eps`` added to an image at timestep ``t`` given its class ``y``
(images in [0, 1] are mapped to [-1, 1] inside). Two denoisers, picked by the input size:

- ``mlp`` for images of at most 16x16 pixels (the bundled 8x8 digits): the flattened image,
  plus time and class embeddings, through three residual blocks of 256 units;
- ``unet`` for larger images (28x28 MNIST / Fashion-MNIST): a two-level UNet (32 and 64
  channels, GroupNorm, SiLU, the time and class embeddings added in every residual block).

The noise schedule is DDPM's linear one, rescaled to ``T`` steps as in Nichol & Dhariwal 2021
(betas from ``1e-4 * 1000 / T`` to ``0.02 * 1000 / T``), so a short chain keeps the usual
signal-to-noise range. The schedule lives in non-persistent buffers rebuilt from the record's
``recipe["diffusion"]``: the weights file holds only weights.

Sampling: DDPM's ancestral sampler over all ``T`` steps (with the clipped x0 prediction and
the posterior variance, as in the reference code) or DDIM (Song et al. 2021; ``eta = 0``,
deterministic) over a few evenly spaced steps.

Calling the model on images alone, ``model(x)``, returns **class logits of the diffusion
classifier** (Li et al., "Your Diffusion Model is Secretly a Zero-Shot Classifier", ICCV 2023;
Clark & Jaini 2023): ``logit_c = -0.5 * mean_k ||eps_k - eps_theta(x_t_k, t_k, c)||^2`` over
:data:`CLASSIFIER_FRACTIONS` of ``T``, with one fixed noise draw per timestep shared by every
sample and class (the paper's variance reduction). So accuracy on a forget set, retain set and
test set means something for a generative model, and the audit's utility table works unchanged.
Deviation from Li et al.: 4 timesteps instead of hundreds with adaptive pruning, to stay cheap.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .._types import Progress, report
from ..errors import AuditInputError
from .archs import register_arch

__all__ = [
    "CLASSIFIER_FRACTIONS",
    "DDPM",
    "DEFAULT_TIMESTEPS",
    "ddpm_from_record",
    "denoising_losses",
    "diffusion_settings",
    "is_diffusion",
    "model_family",
]

#: Diffusion steps of a new model.
DEFAULT_TIMESTEPS = 200
#: Images with at most this many pixels per channel get the MLP denoiser, larger ones the UNet.
MLP_MAX_PIXELS = 256
#: Timesteps (as fractions of T) of the diffusion classifier behind ``model(x)``.
CLASSIFIER_FRACTIONS = (0.1, 0.25, 0.4, 0.55)
#: Largest chain we build (bounds the schedule's buffers and sampling time).
MAX_TIMESTEPS = 4000


def model_family(arch_or_record: Any) -> str:
    """``"diffusion"`` for the ``ddpm`` architecture (a name, record or model), else ``"classifier"``."""
    if isinstance(arch_or_record, nn.Module):
        return getattr(arch_or_record, "family", "classifier")
    arch = arch_or_record if isinstance(arch_or_record, str) else getattr(arch_or_record, "arch", "")
    return "diffusion" if arch == "ddpm" else "classifier"


def is_diffusion(arch_or_record: Any) -> bool:
    return model_family(arch_or_record) == "diffusion"


def diffusion_settings(in_shape: tuple[int, int, int], timesteps: int = DEFAULT_TIMESTEPS) -> dict:
    """What a DDPM's record keeps in ``recipe["diffusion"]``: numbers and short strings only."""
    if not 10 <= int(timesteps) <= MAX_TIMESTEPS:
        raise AuditInputError(f"A DDPM needs between 10 and {MAX_TIMESTEPS} diffusion steps, not {timesteps}.")
    scale = 1000.0 / int(timesteps)
    return {
        "timesteps": int(timesteps),
        "schedule": "linear",
        "beta_start": 1e-4 * scale,
        "beta_end": min(0.02 * scale, 0.999),
        "net": "mlp" if in_shape[1] * in_shape[2] <= MLP_MAX_PIXELS else "unet",
        "prediction": "eps",
    }


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al.), ``(N, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class _Embedding(nn.Module):
    """Time (sinusoidal, then an MLP) plus class embedding, ``(N, width)``."""

    def __init__(self, num_classes: int, width: int) -> None:
        super().__init__()
        self.freq_dim = 64
        self.time = nn.Sequential(nn.Linear(self.freq_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.label = nn.Embedding(num_classes, width)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.time(timestep_embedding(t, self.freq_dim)) + self.label(y)


class MLPDenoiser(nn.Module):
    """For small images: flattened pixels, 3 residual blocks of ``width`` units."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: int = 256, blocks: int = 3) -> None:
        super().__init__()
        self.in_shape = in_shape
        dim = in_shape[0] * in_shape[1] * in_shape[2]
        self.embed = _Embedding(num_classes, width)
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width)) for _ in range(blocks)
        )
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.embed(t, y)
        h = self.inp(x.flatten(1)) + emb
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h).view(-1, *self.in_shape)


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb, c_out)
        self.norm2 = nn.GroupNorm(8, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(nn.functional.silu(self.norm2(h)))
        return h + self.skip(x)


class UNetDenoiser(nn.Module):
    """A two-level UNet for 28x28-sized images: 32 channels at full size, 64 at 1/2 and 1/4."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, base: int = 32) -> None:
        super().__init__()
        c = in_shape[0]
        emb = 4 * base
        self.embed = _Embedding(num_classes, emb)
        self.stem = nn.Conv2d(c, base, 3, padding=1)
        self.down1 = _ResBlock(base, base, emb)
        self.pool1 = nn.Conv2d(base, base, 3, stride=2, padding=1)
        self.down2 = _ResBlock(base, 2 * base, emb)
        self.pool2 = nn.Conv2d(2 * base, 2 * base, 3, stride=2, padding=1)
        self.mid = _ResBlock(2 * base, 2 * base, emb)
        self.up2 = _ResBlock(4 * base, 2 * base, emb)
        self.up1 = _ResBlock(3 * base, base, emb)
        self.out = nn.Sequential(nn.GroupNorm(8, base), nn.SiLU(), nn.Conv2d(base, c, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.embed(t, y)
        h1 = self.down1(self.stem(x), emb)
        h2 = self.down2(self.pool1(h1), emb)
        h = self.mid(self.pool2(h2), emb)
        h = nn.functional.interpolate(h, size=h2.shape[-2:], mode="nearest")
        h = self.up2(torch.cat([h, h2], 1), emb)
        h = nn.functional.interpolate(h, size=h1.shape[-2:], mode="nearest")
        h = self.up1(torch.cat([h, h1], 1), emb)
        return self.out(h)


class DDPM(nn.Module):
    """A class-conditional DDPM: ``net(x_t, t, y) -> eps``, its schedule and samplers.

    ``model(x)`` (images in [0, 1]) returns the diffusion classifier's logits (see the module
    docstring); :meth:`losses` gives per-sample denoising losses, :meth:`sample` images.
    """

    family = "diffusion"

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, settings: dict | None = None) -> None:
        super().__init__()
        self.in_shape = tuple(int(d) for d in in_shape)
        self.num_classes = int(num_classes)
        self.settings = dict(settings or diffusion_settings(self.in_shape))
        self.timesteps = int(self.settings["timesteps"])
        if self.settings.get("net") == "unet":
            if min(self.in_shape[1:]) < 8:
                raise AuditInputError("The DDPM's UNet needs images of at least 8x8 pixels.")
            self.net: nn.Module = UNetDenoiser(self.in_shape, self.num_classes)
        else:
            self.net = MLPDenoiser(self.in_shape, self.num_classes)
        betas = torch.linspace(float(self.settings["beta_start"]), float(self.settings["beta_end"]), self.timesteps, dtype=torch.float64)
        alphas_cumprod = torch.cumprod(1.0 - betas, 0)
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)
        gen = torch.Generator().manual_seed(0)
        k = len(CLASSIFIER_FRACTIONS)
        self.register_buffer("classifier_noise", torch.randn((k, *self.in_shape), generator=gen), persistent=False)
        self.register_buffer("classifier_t", torch.tensor([int(f * self.timesteps) for f in CLASSIFIER_FRACTIONS]), persistent=False)

    # -- the forward process and the loss -------------------------------------------------
    def noisy(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` for ``x0`` in [-1, 1]."""
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def losses(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Per-sample denoising loss ``mean ||eps - eps_theta(x_t, t, y)||^2`` (images ``x`` in [0, 1])."""
        x0 = x * 2 - 1
        pred = self.net(self.noisy(x0, t, noise), t, y)
        return (pred - noise).pow(2).flatten(1).mean(1)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """DDPM's simple loss on a batch: uniform timesteps, Gaussian noise."""
        t = torch.randint(0, self.timesteps, (len(x),), generator=generator).to(x.device)
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        return self.losses(x, y, t, noise).mean()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Diffusion-classifier logits ``(N, num_classes)`` for images ``x`` in [0, 1]."""
        x0 = x * 2 - 1
        n = len(x)
        out = torch.zeros(n, self.num_classes, device=x.device)
        for k in range(len(self.classifier_t)):
            t = self.classifier_t[k].expand(n)
            noise = self.classifier_noise[k].expand(n, *self.in_shape)
            xt = self.noisy(x0, t, noise)
            for c in range(self.num_classes):
                y = torch.full((n,), c, dtype=torch.long, device=x.device)
                out[:, c] -= 0.5 * (self.net(xt, t, y) - noise).pow(2).flatten(1).sum(1)
        return out / len(self.classifier_t)

    # -- sampling ---------------------------------------------------------------------------
    def _x0_from_eps(self, xt: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
        abar = self.alphas_cumprod[t]
        return ((xt - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1, 1)

    @torch.no_grad()
    def sample(
        self,
        labels: torch.Tensor,
        *,
        sampler: str = "ddim",
        steps: int = 50,
        seed: int = 0,
        progress: Progress | None = None,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """Images in [0, 1] for the given class ``labels``: DDIM over ``steps`` evenly spaced steps
        (``eta = 0``), or DDPM's ancestral sampler over all ``T`` steps (``steps`` ignored)."""
        if sampler not in ("ddim", "ddpm"):
            raise AuditInputError(f"Unknown sampler '{sampler}'; choose ddim or ddpm.")
        labels = torch.as_tensor(labels, dtype=torch.long).cpu()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise AuditInputError(f"Class labels must lie between 0 and {self.num_classes - 1}.")
        device = self.betas.device
        was_training = self.training
        self.eval()
        gen = torch.Generator().manual_seed(int(seed))
        if sampler == "ddim":
            steps = max(1, min(int(steps), self.timesteps))
            seq = sorted({round(v) for v in torch.linspace(0, self.timesteps - 1, steps).tolist()}, reverse=True)
        else:
            seq = list(range(self.timesteps - 1, -1, -1))
        chunks = [labels[i : i + batch_size] for i in range(0, len(labels), batch_size)]
        total = max(1, len(seq) * len(chunks))
        out = []
        done = 0
        for chunk in chunks:
            x = torch.randn((len(chunk), *self.in_shape), generator=gen).to(device)
            y = chunk.to(device)
            for i, t in enumerate(seq):
                tt = torch.full((len(chunk),), t, dtype=torch.long, device=device)
                eps = self.net(x, tt, y)
                x0 = self._x0_from_eps(x, t, eps)
                if sampler == "ddim":
                    prev = seq[i + 1] if i + 1 < len(seq) else -1
                    abar_prev = self.alphas_cumprod[prev] if prev >= 0 else torch.tensor(1.0, device=device)
                    eps = (x - self.alphas_cumprod[t].sqrt() * x0) / (1 - self.alphas_cumprod[t]).sqrt()
                    x = abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps
                else:
                    abar = self.alphas_cumprod[t]
                    abar_prev = self.alphas_cumprod[t - 1] if t > 0 else torch.tensor(1.0, device=device)
                    beta = self.betas[t]
                    mean = (abar_prev.sqrt() * beta / (1 - abar)) * x0 + ((1 - beta).sqrt() * (1 - abar_prev) / (1 - abar)) * x
                    if t > 0:
                        var = beta * (1 - abar_prev) / (1 - abar)
                        mean = mean + var.sqrt() * torch.randn(x.shape, generator=gen).to(device)
                    x = mean
                done += 1
                if done % max(1, total // 50) == 0 or done == total:
                    report(progress, done / total, f"Sampling ({sampler}): step {done}/{total}")
            out.append(((x.clamp(-1, 1) + 1) / 2).cpu())
        self.train(was_training)
        return torch.cat(out) if out else torch.empty(0, *self.in_shape)


@register_arch("ddpm", "class-conditional DDPM (MLP denoiser for <= 16x16 images, UNet above)")
def build_ddpm(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return DDPM(in_shape, num_classes)


def ddpm_from_record(record) -> DDPM:
    """A fresh DDPM with the schedule its record keeps in ``recipe["diffusion"]``."""
    settings = record.recipe.get("diffusion") if isinstance(record.recipe, dict) else None
    if settings is None:
        settings = diffusion_settings(tuple(record.in_shape))
    return DDPM(tuple(record.in_shape), record.num_classes, settings)


@torch.no_grad()
def denoising_losses(
    model: DDPM,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    timesteps: list[int] | tuple[int, ...],
    draws: int = 1,
    seed: int = 0,
    device: torch.device | None = None,
    chunk: int = 256,
) -> torch.Tensor:
    """Per sample and timestep, the denoising loss averaged over ``draws`` noise draws:
    ``(N, len(timesteps))``. Noise comes from one generator seeded with ``seed`` in sample
    order, so the same call gives the same numbers."""
    device = device or model.betas.device
    gen = torch.Generator().manual_seed(int(seed))
    ts = [int(t) for t in timesteps]
    if not ts or min(ts) < 0 or max(ts) >= model.timesteps:
        raise AuditInputError(f"Timesteps must lie between 0 and {model.timesteps - 1}.")
    out = torch.zeros(len(x), len(ts))
    for start in range(0, len(x), chunk):
        xb, yb = x[start : start + chunk].to(device), y[start : start + chunk].to(device)
        for j, t in enumerate(ts):
            tt = torch.full((len(xb),), t, dtype=torch.long, device=device)
            for _ in range(draws):
                noise = torch.randn(xb.shape, generator=gen).to(device)
                out[start : start + chunk, j] += model.losses(xb, yb, tt, noise).cpu() / draws
    return out
