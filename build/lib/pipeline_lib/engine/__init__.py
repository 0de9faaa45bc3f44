"""The one training loop shared by every stage and every model family."""
from .loop import TrainResult, train
from .utils import seed_everything, select_device

__all__ = ["TrainResult", "train", "seed_everything", "select_device"]
