"""The adapter file `results/{stage}.lora.pt`, and applying one to its base checkpoint.

    save_adapter("results/pruned_finetuned.lora.pt", model, lora_cfg, names, base="results/pruned.pt", meta={...})
    loaded = apply_adapter("results/pruned.pt", "results/pruned_finetuned.lora.pt")   # merged, plain

The file holds plain containers (loadable with weights_only=True, sealed with a checksum like
every slimflow file): the adapters' tensors, r, alpha, dropout, the wrapped layers' names,
train_bn, and the sha256 of the base checkpoint, so an adapter meets only the base it was
trained on.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import UserError
from ..io import sha256_file
from ..torchfile import load_sealed, save_sealed
from .lora import adapter_state, inject, load_adapter_state, merge, warn_full_rank

__all__ = ["FORMAT", "adapter_path", "resolved", "save_adapter", "load_adapter", "apply_adapter", "inject_from_config"]

FORMAT = "slimflow/lora-v1"


def adapter_path(checkpoint: str | os.PathLike) -> Path:
    """Where a LoRA stage's adapter lives beside its merged checkpoint: x.pt -> x.lora.pt."""
    return Path(checkpoint).with_suffix(".lora.pt")


def resolved(lora_cfg: dict) -> dict:
    """A `stages.<stage>.lora` section with `alpha: null` made explicit (alpha = r)."""
    return {**lora_cfg, "alpha": lora_cfg["alpha"] if lora_cfg["alpha"] is not None else lora_cfg["r"]}


def inject_from_config(model: nn.Module, lora_cfg: dict, fixed: list[nn.Module] = (), key: str = "lora") -> list[str]:
    """`inject` with a `stages.<stage>.lora` section (targets resolved against `fixed`; errors name `key`),
    warning once if r reaches the full rank of some layers (`warn_full_rank`)."""
    cfg = resolved(lora_cfg)
    names = inject(model, r=cfg["r"], alpha=cfg["alpha"], dropout=cfg["dropout"], targets=cfg["targets"],
                   fixed=fixed, train_bn=cfg["train_bn"], key=key)
    warn_full_rank(model, names, cfg["r"], key)
    return names


def save_adapter(path: str | os.PathLike, model: nn.Module, lora_cfg: dict, names: list[str], *,
                 base: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Write the adapters of an injected (not yet merged) model."""
    save_sealed(path, {"format": FORMAT, "base_sha256": sha256_file(base), "base_path": str(base),
                       "lora": resolved(lora_cfg), "layers": list(names),
                       "state_dict": adapter_state(model, lora_cfg["train_bn"]), "meta": meta})


def load_adapter(path: str | os.PathLike) -> dict:
    adapter = load_sealed(path, remedy="delete it and rerun the LoRA stage that writes it")
    if not isinstance(adapter, dict) or adapter.get("format") != FORMAT:
        raise UserError(f"{path}: not a slimflow LoRA adapter (expected format {FORMAT!r})")
    return adapter


def apply_adapter(base: str | os.PathLike, adapter_path: str | os.PathLike):
    """The base checkpoint's model with the adapter injected, loaded and merged (a LoadedModel)."""
    from ..tasks import load_model  # tasks import checkpoint → this module stays importable alone

    adapter = load_adapter(adapter_path)
    digest = sha256_file(base)
    if digest != adapter["base_sha256"]:
        raise UserError(f"{adapter_path}: this adapter belongs to the base {adapter['base_path']} "
                        f"(sha256 {adapter['base_sha256'][:12]}…), not to {base} (sha256 {digest[:12]}…); "
                        "apply it to the checkpoint it was trained on")
    loaded = load_model(base)
    cfg = adapter["lora"]
    inject(loaded.model, r=cfg["r"], alpha=cfg["alpha"], dropout=cfg["dropout"], targets=adapter["layers"],
           train_bn=cfg["train_bn"])
    load_adapter_state(loaded.model, adapter["state_dict"], str(adapter_path))
    merge(loaded.model).eval()
    return loaded
