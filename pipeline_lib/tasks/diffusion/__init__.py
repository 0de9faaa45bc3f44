"""Class-conditional diffusion (a DDPM UNet with cross-attention) on handwritten digits in MNIST's IDX format."""
from .task import DiffusionTask

TASK = DiffusionTask()

__all__ = ["TASK", "DiffusionTask"]
