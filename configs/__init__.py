"""Bundled YAML configuration (installed as mer_eval.configs)."""
