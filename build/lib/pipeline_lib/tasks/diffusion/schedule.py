"""DDPM noise schedule, the ε-prediction training loss, and the DDPM and DDIM samplers.

    schedule = NoiseSchedule(T=1000, kind="linear")
    loss = training_loss(model, 2 * batch["images"] - 1, batch["labels"], schedule)      # L1 on ε
    g = torch.Generator().manual_seed(0)
    x0 = ddim_sample(model, torch.arange(10), schedule, (10, 1, 28, 28), g, steps=50)    # in [-1, 1]

Ho et al., "Denoising Diffusion Probabilistic Models" (2020): x_t = √ᾱ_t x0 + √(1-ᾱ_t) ε, the
network predicts ε; ancestral sampling with the posterior variance β̃_t. Nichol & Dhariwal (2021)
for the cosine schedule; Song et al., "Denoising Diffusion Implicit Models" (2021) for DDIM.
`model` is any callable (x_t, t, labels) -> ε — a torch module or the ONNX Runtime stand-in — so the
network reads the time as the fraction of the schedule, t / T in [0, 1) (`network_time`), and the
samplers neither switch its mode nor look at its parameters. Randomness comes only from the
generator passed in: the same seed gives the same samples.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["NoiseSchedule", "training_loss", "ddpm_sample", "ddim_sample", "ddim_timesteps"]

Denoiser = Callable[[Tensor, Tensor, Tensor], Tensor]
Progress = Callable[[int, int], None]  # (steps done, total steps)


class NoiseSchedule:
    """β_t for t = 0 … T-1 and the quantities the loss and the samplers read, float32 on the CPU.

    Computed in float64 first: 1 - ᾱ_t for small t and the cumulative product over 1000 steps
    lose digits in float32.
    """

    def __init__(self, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, kind: str = "linear"):
        if int(T) != T or T < 1:
            raise ValueError(f"T must be a positive integer, got {T}")
        self.T, self.kind = int(T), kind
        if kind == "linear":
            if not 0 < beta_start <= beta_end < 1:
                raise ValueError(f"linear schedule needs 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
            # β_start, β_end are Ho et al.'s for T = 1000, scaled by 1000/T (as improved-diffusion does)
            # so that a shorter chain still ends in pure noise (ᾱ_T ≤ 4e-5 for T ≥ 50).
            scale = 1000 / self.T
            betas = torch.linspace(beta_start * scale, min(beta_end * scale, 0.999), self.T, dtype=torch.float64)
        elif kind == "cosine":
            s = 0.008
            steps = torch.arange(self.T + 1, dtype=torch.float64) / self.T
            f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)  # the clip keeps the last steps from β = 1
        else:
            raise ValueError(f"schedule kind must be 'linear' or 'cosine', got {kind!r}")
        alphas = 1 - betas
        cumprod = torch.cumprod(alphas, 0)
        prev = torch.cat([cumprod.new_ones(1), cumprod[:-1]])  # ᾱ_{t-1}, with ᾱ_{-1} = 1
        self.betas = betas.float()
        self.alphas = alphas.float()
        self.alphas_cumprod = cumprod.float()
        self.alphas_cumprod_prev = prev.float()
        self.sqrt_alphas_cumprod = cumprod.sqrt().float()
        self.sqrt_one_minus_alphas_cumprod = (1 - cumprod).sqrt().float()
        self.posterior_variance = (betas * (1 - prev) / (1 - cumprod)).float()  # β̃_t; 0 at t = 0

    def __repr__(self) -> str:
        return f"NoiseSchedule(T={self.T}, kind={self.kind!r})"

    def network_time(self, t: Tensor) -> Tensor:
        """What the network reads for step t: t / T, float32, so its inputs do not depend on T."""
        return t.to(torch.float32) / self.T

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = √ᾱ_t x0 + √(1-ᾱ_t) noise, with t (B,) one timestep per sample."""
        return _at(self.sqrt_alphas_cumprod, t, x0) * x0 + _at(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise


def _at(values: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """values[t] shaped (B, 1, …, 1) to broadcast over `like` (B, …), on like's device and dtype."""
    picked = values.to(like.device)[t.to(like.device)]
    return picked.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def _randn(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Normal noise drawn on the generator's device (so a CPU seed gives the same noise anywhere), then moved."""
    source = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=source).to(device)


def training_loss(model: Denoiser, x0: Tensor, labels: Tensor, schedule: NoiseSchedule,
                  generator: torch.Generator | None = None) -> Tensor:
    """Mean L1 between the predicted and the true noise at t ~ U{0 … T-1} per sample; x0 in [-1, 1].

    With `generator` the timesteps and noise come from it (a deterministic validation loss);
    without, from torch's default generator (seeded by the training loop).
    """
    source = generator.device if generator is not None else x0.device
    t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator, device=source).to(x0.device)
    noise = _randn(x0.shape, generator, x0.device).to(x0.dtype)
    return F.l1_loss(model(schedule.q_sample(x0, t, noise), schedule.network_time(t), labels), noise)


def _check_shape(labels: Tensor, shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or shape[0] != labels.shape[0]:
        raise ValueError(f"shape must be (B, C, H, W) with B = len(labels) = {labels.shape[0]}, got {shape}")
    return shape


def _eps(model: Denoiser, x: Tensor, t: int, labels: Tensor, schedule: NoiseSchedule) -> Tensor:
    steps = torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device)
    return model(x, schedule.network_time(steps), labels).to(x.device, x.dtype)  # an ORT stand-in answers on the CPU


@torch.no_grad()
def ddpm_sample(model: Denoiser, labels: Tensor, schedule: NoiseSchedule, shape: Sequence[int],
                generator: torch.Generator, progress: Progress | None = None) -> Tensor:
    """Ancestral sampling from x_T ~ N(0, I) through all T steps; returns x0 clamped to [-1, 1], on labels' device.

    x_{t-1} = 1/√α_t (x_t - β_t/√(1-ᾱ_t) ε̂) + √β̃_t z, with no noise at the last step (β̃_0 = 0).
    """
    shape, device = _check_shape(labels, shape), labels.device
    x = _randn(shape, generator, device)
    betas, sigma_t = schedule.betas.tolist(), schedule.sqrt_one_minus_alphas_cumprod.tolist()
    variance = schedule.posterior_variance.tolist()
    for i, t in enumerate(reversed(range(schedule.T))):
        eps = _eps(model, x, t, labels, schedule)
        x = (x - betas[t] / sigma_t[t] * eps) / math.sqrt(1 - betas[t])
        if t > 0:
            x = x + math.sqrt(variance[t]) * _randn(shape, generator, device)
        if progress is not None:
            progress(i + 1, schedule.T)
    return x.clamp(-1, 1)


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """`steps` distinct timesteps evenly spaced over 0 … T-1, descending (T-1 first, 0 last)."""
    if not 1 <= steps <= T:
        raise ValueError(f"DDIM steps must be in [1, T={T}], got {steps}")
    if steps == 1:
        return [T - 1]
    # Rounded (half up) linspace: distinct because the spacing (T-1)/(steps-1) is at least 1.
    return [math.floor(i * (T - 1) / (steps - 1) + 0.5) for i in reversed(range(steps))]


@torch.no_grad()
def ddim_sample(model: Denoiser, labels: Tensor, schedule: NoiseSchedule, shape: Sequence[int],
                generator: torch.Generator, steps: int = 50, eta: float = 0.0,
                progress: Progress | None = None) -> Tensor:
    """DDIM over `steps` evenly spaced timesteps; η = 0 is deterministic given the initial noise, η = 1 DDPM-like.

    From t to the next timestep s (ᾱ_s = 1 after the last): x0̂ = (x_t - √(1-ᾱ_t) ε̂)/√ᾱ_t,
    σ = η √((1-ᾱ_s)/(1-ᾱ_t)) √(1 - ᾱ_t/ᾱ_s), x_s = √ᾱ_s x0̂ + √(1-ᾱ_s-σ²) ε̂ + σ z.
    Returns x0 clamped to [-1, 1], on labels' device.
    """
    shape, device = _check_shape(labels, shape), labels.device
    seq = ddim_timesteps(schedule.T, steps)
    # ᾱ and 1-ᾱ both from the schedule: 1 - float32(ᾱ) would keep ~3 digits of 1-ᾱ_0 = β_0 = 1e-4.
    abar = schedule.alphas_cumprod.tolist()
    one_minus = (schedule.sqrt_one_minus_alphas_cumprod.double() ** 2).tolist()
    x = _randn(shape, generator, device)
    for i, t in enumerate(seq):
        a_t, b_t = abar[t], one_minus[t]
        a_s, b_s = (abar[seq[i + 1]], one_minus[seq[i + 1]]) if i + 1 < len(seq) else (1.0, 0.0)
        eps = _eps(model, x, t, labels, schedule)
        x0 = (x - math.sqrt(b_t) * eps) / math.sqrt(a_t)
        sigma = eta * math.sqrt(b_s / b_t * (b_t - b_s) / a_s)  # 1 - ᾱ_t/ᾱ_s = ((1-ᾱ_t) - (1-ᾱ_s)) / ᾱ_s
        x = math.sqrt(a_s) * x0 + math.sqrt(max(b_s - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * _randn(shape, generator, device)
        if progress is not None:
            progress(i + 1, len(seq))
    return x.clamp(-1, 1)
