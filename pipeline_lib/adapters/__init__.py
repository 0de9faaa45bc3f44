"""LoRA adapters: inject into Linear/Conv2d layers, train them alone, save them alone, merge them."""
from .files import FORMAT, adapter_path, apply_adapter, inject_from_config, load_adapter, resolved, save_adapter
from .lora import (FrozenNorms, LoRALayer, adapter_state, full_rank, inject, load_adapter_state, merge, norm_layers,
                   resolve_targets, warn_full_rank)

__all__ = ["FORMAT", "LoRALayer", "FrozenNorms", "inject", "inject_from_config", "resolved", "resolve_targets", "merge",
           "norm_layers", "adapter_state", "load_adapter_state", "adapter_path", "save_adapter", "load_adapter",
           "apply_adapter", "full_rank", "warn_full_rank"]
