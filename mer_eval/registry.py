"""Lazy registries: names map to ``"module:Class"`` strings, imported only when used.

The core imports none of ``mer_eval.metrics`` / ``generators`` / ``reports``: it names them here and
loads them on demand. Third parties add metrics through the ``mer_eval.metrics`` entry-point group
and providers through ``mer_eval.providers``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

# Built-in metric families are found, not listed: every class in a module of ``mer_eval.metrics`` that
# subclasses :class:`mer_eval.metric.Metric` and has a ``name``. Adding a metric is one file.
METRICS_PACKAGE = "mer_eval.metrics"
_BUILTIN_METRICS: dict[str, str] | None = None


def builtin_metrics() -> dict[str, str]:
    """``{family name: "module:Class"}`` of the metric families shipped in ``mer_eval.metrics``."""
    global _BUILTIN_METRICS
    if _BUILTIN_METRICS is None:
        _BUILTIN_METRICS = _scan(METRICS_PACKAGE, "mer_eval.metric:Metric")
    return dict(_BUILTIN_METRICS)


def default_metrics() -> list[str]:
    """The families ``score`` runs when ``score.metrics`` is not set: every built-in family whose
    ``run_by_default`` is true, in ``order`` (then name). Entry-point families run when named."""
    fams = [(load_object(spec), name) for name, spec in builtin_metrics().items()]
    fams = [(getattr(c, "order", 100), n) for c, n in fams if getattr(c, "run_by_default", True)]
    return [n for _, n in sorted(fams)]


# Built-in providers are found the same way in ``mer_eval.generators.providers``: every subclass of its
# ``Provider`` with a ``name`` of its own.
PROVIDERS_PACKAGE = "mer_eval.generators.providers"
_BUILTIN_PROVIDERS: dict[str, str] | None = None


def builtin_providers() -> dict[str, str]:
    global _BUILTIN_PROVIDERS
    if _BUILTIN_PROVIDERS is None:
        _BUILTIN_PROVIDERS = _scan(PROVIDERS_PACKAGE, f"{PROVIDERS_PACKAGE}.base:Provider")
    return dict(_BUILTIN_PROVIDERS)


def _scan(package: str, base_spec: str) -> dict[str, str]:
    """``{name: "module:Class"}`` of the classes in ``package``'s modules that subclass ``base_spec`` and set a
    ``name`` of their own."""
    import inspect
    import pkgutil

    base = load_object(base_spec)
    pkg = importlib.import_module(package)
    found: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"{package}.{info.name}")
        for attr, obj in vars(mod).items():
            if (inspect.isclass(obj) and issubclass(obj, base) and obj is not base
                    and obj.__module__ == mod.__name__ and isinstance(obj.__dict__.get("name"), str)):
                found[obj.name] = f"{mod.__name__}:{attr}"
    return found


_GROUPS = {"metrics": ("mer_eval.metrics", builtin_metrics), "providers": ("mer_eval.providers", builtin_providers)}


def load_object(spec: str) -> Any:
    """Import ``"package.module:Attr"``."""
    if ":" not in spec:
        raise ValueError(f"registry spec {spec!r} must look like 'module:Class'")
    mod, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def available(kind: str) -> dict[str, str]:
    """Built-in names plus those registered by installed packages' entry points."""
    group, builtin = _GROUPS[kind]
    out = dict(builtin())
    for ep in entry_points(group=group):
        out.setdefault(ep.name, ep.value)
    return out


def get(kind: str, name: str) -> Any:
    specs = available(kind)
    if name not in specs:
        raise KeyError(f"unknown {kind[:-1]} {name!r}; known: {', '.join(sorted(specs))}")
    return load_object(specs[name])


def get_metric(name: str) -> Any:
    return get("metrics", name)


def get_provider(name: str) -> Any:
    return get("providers", name)


def metric_outputs() -> dict[str, str]:
    """``{output name: family}`` of every installed metric family (built-in and entry points): the names a
    score table can hold, besides ``composite_score``. Imports every family's module (not its models)."""
    out: dict[str, str] = {}
    for fam in available("metrics"):
        for o in get_metric(fam).output_names():
            out.setdefault(o, fam)
    return out
