"""The one training loop shared by every stage and every model family.

Its names are imported on first use (PEP 562): a step that only seeds and picks a device
(`engine.utils`) does not load the loop's loggers (pandas).
"""
from ..lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {"loop": ("TrainResult", "train"),
                                               "utils": ("seed_everything", "select_device")})
