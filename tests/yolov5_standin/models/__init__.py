"""YOLOv5's `models` package, as far as a checkpoint's pickle names it (test stand-in)."""
