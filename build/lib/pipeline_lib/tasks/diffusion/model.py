"""Class-conditional DDPM UNet: conv residual blocks, label tokens read by cross-attention, skip concatenations.

    model = DiffusionUNet(in_channels=1, base=32, mults=(1, 2, 2), num_classes=10)
    eps = model(x_t, t, labels)   # x_t (B, 1, 28, 28) in [-1, 1]-ish, t (B,) float: step / T in [0, 1), labels (B,) int64
    keep = model.keep_width_modules()   # what the pruner must not narrow

A small Stable-Diffusion-shaped seed: the class is embedded as `context_tokens` tokens that the
feature maps attend to (queries from the image, keys/values from the tokens), and the timestep
enters every residual block as a per-channel shift. Every BatchNorm sits where zeroing its γ and β
silences the channel completely (the time shift is added *before* BN1, the attention output goes
through a BN before the residual add), so masking a channel equals removing it — what the
slimming code relies on. Only batch-independent ops (reshape, transpose, matmul, softmax) are used
so the network traces for torch-pruning and exports to ONNX with a dynamic batch.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["TIME_SCALE", "timestep_embedding", "ResBlock", "CrossAttention", "DiffusionUNet"]

# The network reads the diffusion time as a fraction of the schedule (schedule.network_time) and
# embeds it on a 1000-step clock, so the sinusoids span their usual range whatever T is.
TIME_SCALE = 1000.0


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding (B, dim) of timesteps t (B,) (0 … 1000): [cos(t·f_k), sin(t·f_k)], f_k geometric."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * (-math.log(max_period) / half))
    args = t.to(torch.float32).unsqueeze(1) * freqs.unsqueeze(0)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:  # odd dims: one zero column keeps the requested width
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


def _conv_bn(cin: int, cout: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)


class ResBlock(nn.Module):
    """relu(bn1(conv1(x) + temb)) → relu(bn2(conv2(·))) + shortcut(x); temb = Linear(SiLU(time embedding)).

    The time shift goes in before BN1 (not after its ReLU): a channel whose γ and β are zeroed is
    then exactly 0 whatever the timestep, so masking it equals pruning it (with conv1, temb and bn1).
    """

    def __init__(self, cin: int, cout: int, time_dim: int):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, cout)
        self.temb = nn.Linear(time_dim, cout)
        self.conv2, self.bn2 = _conv_bn(cout, cout)
        self.act = nn.ReLU()
        self.time_act = nn.SiLU()
        self.shortcut = nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False),
                                                                        nn.BatchNorm2d(cout))

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        shift = self.temb(self.time_act(temb))
        h = self.conv1(x) + shift.view(shift.shape[0], shift.shape[1], 1, 1)
        h = self.act(self.bn1(h))
        h = self.act(self.bn2(self.conv2(h)))
        return h + self.shortcut(x)


class CrossAttention(nn.Module):
    """x + bn(wo(softmax(q kᵀ / √d) v)): queries from the feature map, keys/values from the context tokens.

    `wq` is a 1×1 conv (pruning the feature map is a plain input-channel change); `wk`, `wv` read
    the (B, tokens, context_dim) context. The output projection feeds a BatchNorm so that a pruned
    feature-map channel is silenced on this branch too (masked = pruned).
    """

    def __init__(self, channels: int, context_dim: int, attn_dim: int):
        super().__init__()
        self.wq = nn.Conv2d(channels, attn_dim, 1)
        self.wk = nn.Linear(context_dim, attn_dim)
        self.wv = nn.Linear(context_dim, attn_dim)
        self.wo = nn.Conv2d(attn_dim, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.scale = attn_dim ** -0.5

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        b, _, h, w = x.shape
        q = self.wq(x)
        d = q.shape[1]
        q = q.reshape(b, d, h * w).transpose(1, 2)  # (B, HW, d)
        k, v = self.wk(context), self.wv(context)  # (B, tokens, d)
        attn = torch.softmax(torch.matmul(q, k.transpose(1, 2)) * self.scale, dim=-1)  # (B, HW, tokens)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, d, h, w)
        return x + self.bn(self.wo(out))


class DiffusionUNet(nn.Module):
    """ε-prediction UNet: stem, down levels (ResBlock [+ attention], stride-2 conv), middle, mirrored up levels.

    Level i has base·mults[i] channels; every level but the last halves the resolution, so H and W
    must be divisible by 2^(len(mults)-1) (28 → 14 → 7 with three levels). The up path concatenates
    each level's skip (the down ResBlock/attention output) with the upsampled features.
    """

    def __init__(self, in_channels: int = 1, base: int = 32, mults: Sequence[int] = (1, 2, 2), num_classes: int = 10,
                 time_dim: int = 128, context_tokens: int = 4, context_dim: int = 64, attn_dim: int = 64,
                 attn_levels: Sequence[int] = (1, 2)):
        super().__init__()
        mults, attn_levels = tuple(int(m) for m in mults), tuple(int(i) for i in attn_levels)
        if not mults or any(m < 1 for m in mults):
            raise ValueError(f"mults must be positive integers, got {mults}")
        if any(not 0 <= i < len(mults) for i in attn_levels):
            raise ValueError(f"attn_levels {attn_levels} must index the {len(mults)} levels of mults")
        self.levels, self.attn_levels = len(mults), attn_levels
        self.context_tokens, self.context_dim = context_tokens, context_dim
        self.time_dim = time_dim
        widths = [base * m for m in mults]

        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.label_embed = nn.Embedding(num_classes, context_tokens * context_dim)
        self.stem = nn.Sequential(*_conv_bn(in_channels, base), nn.ReLU())

        def attention(i: int, ch: int) -> nn.Module:  # Identity keeps the ModuleLists indexed by level
            return CrossAttention(ch, context_dim, attn_dim) if i in attn_levels else nn.Identity()

        self.down, self.down_attn, self.downsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        ch = base
        for i, width in enumerate(widths):
            self.down.append(ResBlock(ch, width, time_dim))
            self.down_attn.append(attention(i, width))
            ch = width
            if i < self.levels - 1:
                self.downsample.append(nn.Sequential(*_conv_bn(ch, ch, stride=2), nn.ReLU()))

        self.mid1 = ResBlock(ch, ch, time_dim)
        self.mid_attn = CrossAttention(ch, context_dim, attn_dim)
        self.mid2 = ResBlock(ch, ch, time_dim)

        # up[j] serves level levels-1-j: input = current features ‖ that level's skip.
        self.up, self.up_attn = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(self.levels)):
            self.up.append(ResBlock(ch + widths[i], widths[i], time_dim))
            self.up_attn.append(attention(i, widths[i]))
            ch = widths[i]
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.out = nn.Conv2d(ch, in_channels, 3, 1, 1)  # predicts the noise: bias, no BN

    def keep_width_modules(self) -> list[nn.Module]:
        """Modules whose output width the pruner must keep: time MLP, label tokens, attention q/k/v, output conv.

        The per-block `temb` Linear and the attention `wo` are not here: their outputs are the
        block's channels and are pruned with them.
        """
        keep: list[nn.Module] = [self.time_mlp[0], self.time_mlp[2], self.label_embed, self.out]
        for m in self.modules():
            if isinstance(m, CrossAttention):
                keep += [m.wq, m.wk, m.wv]
        return keep

    def forward(self, x: Tensor, t: Tensor, label: Tensor) -> Tensor:
        factor = 2 ** (self.levels - 1)
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(f"input size {tuple(x.shape[-2:])} must be divisible by {factor} "
                             f"({self.levels} levels)")
        temb = self.time_mlp(timestep_embedding(t * TIME_SCALE, self.time_dim))
        context = self.label_embed(label).reshape(label.shape[0], self.context_tokens, self.context_dim)

        def attend(block: nn.Module, h: Tensor) -> Tensor:
            return block(h, context) if isinstance(block, CrossAttention) else h

        h = self.stem(x)
        skips = []
        for i in range(self.levels):
            h = attend(self.down_attn[i], self.down[i](h, temb))
            skips.append(h)
            if i < self.levels - 1:
                h = self.downsample[i](h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb), context), temb)
        for j, i in enumerate(reversed(range(self.levels))):
            if i < self.levels - 1:
                h = self.upsample(h)
            h = attend(self.up_attn[j], self.up[j](torch.cat([h, skips[i]], dim=1), temb))
        return self.out(h)
