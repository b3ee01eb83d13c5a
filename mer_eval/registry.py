"""Lazy registries: names map to ``"module:Class"`` strings, imported only when used.

The core imports none of ``mer_eval.metrics`` / ``generators`` / ``reports``: it names them here and
loads them on demand. Third parties add metrics through the ``mer_eval.metrics`` entry-point group
and providers through ``mer_eval.providers``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

# metric family -> "module:Class"
METRICS: dict[str, str] = {
    "text_quality": "mer_eval.metrics.text_quality:TextQuality",
    "label_agreement": "mer_eval.metrics.label_agreement:LabelAgreement",
    "cross_modal": "mer_eval.metrics.cross_modal:CrossModalAgreement",
    "au_f1": "mer_eval.metrics.au_f1:AUF1",
    "asr_wer": "mer_eval.metrics.asr_wer:ASRWER",
    "clip": "mer_eval.metrics.clip_score:ClipImageText",
    "clap": "mer_eval.metrics.clap_score:ClapAudioText",
    "nli": "mer_eval.metrics.nli:NLIConsistency",
    "conclusion": "mer_eval.metrics.conclusion:ConclusionConsistency",
    "grounding": "mer_eval.metrics.grounding:Grounding",
    "au_faithfulness": "mer_eval.metrics.au_faithfulness:AUFaithfulness",
    "abstention": "mer_eval.metrics.abstention:Abstention",
}

# provider name -> "module:Class"
PROVIDERS: dict[str, str] = {
    "offline": "mer_eval.generators.providers.offline:OfflineProvider",
    "openai": "mer_eval.generators.providers.openai_compat:OpenAIProvider",
    "ollama": "mer_eval.generators.providers.openai_compat:OllamaProvider",
    "gemini": "mer_eval.generators.providers.gemini:GeminiProvider",
    "hf": "mer_eval.generators.providers.hf:HFProvider",
}

_GROUPS = {"metrics": ("mer_eval.metrics", METRICS), "providers": ("mer_eval.providers", PROVIDERS)}


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
    out = dict(builtin)
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
