"""mer-eval: evaluation-first quality suite for multimodal emotion recognition annotation datasets."""

__version__ = "0.1.0"
