"""engine_lib: a training engine for PyTorch research code in the detectron2 tradition."""

__version__ = "0.1.0"

__all__ = ["__version__"]
