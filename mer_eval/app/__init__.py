"""Whole jobs composed from every layer (the demo): like :mod:`mer_eval.cli`, this may import generators,
metrics and reports; nothing in the core, domain, generators, metrics or reports imports it."""
