"""Configuration: ``configs/default.yaml`` < ``--config FILE`` < ``--set key=value``.

Validated by pydantic with ``extra="forbid"`` everywhere, so a misspelt key is an error that names the
key and the keys allowed there.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator


class ConfigError(ValueError):
    pass


class _C(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelsConfig(_C):
    dir: Optional[str] = None  # like MER_EVAL_MODELS_DIR; the env var wins when both are set
    paths: dict[str, str] = Field(default_factory=dict)  # model key -> explicit local path
    ids: dict[str, str] = Field(default_factory=dict)  # model key -> hub id to use instead of the default
    allow_download: bool = False  # let libraries fetch from the hub when online and HF_HUB_OFFLINE is unset


class CacheConfig(_C):
    enabled: bool = True
    dir: Optional[str] = None  # default: $MER_EVAL_CACHE_DIR or ~/.cache/mer-eval


























EXECUTION_ONLY = ("engine", "workers")  # score settings that change how, never what, is computed


class ScoreConfig(_C):
    # null: every built-in metric family (mer_eval.registry.default_metrics); or a list of family names
    metrics: Optional[list[str]] = None
    # samples per model batch (a number), or auto: the default 16 on the CPU; on CUDA each family starts at 128 and
    # halves its batch on an out-of-memory error, keeping the size that worked (mer_eval.metric.Metric.batch_size)
    batch_size: Union[int, Literal["auto"]] = 16
    device: Literal["cpu", "cuda", "auto"] = "auto"
    composite: str = "mer-v2"
    # how the chunks of samples are computed (never what is computed: outputs are the same whichever runs them,
    # and Config.hash leaves these two out): local = this process; process = a pool of `workers` processes on
    # this machine; ray = Ray Data over a Ray cluster (`pip install 'mer-eval[ray]'`)
    engine: Literal["local", "process", "ray"] = "local"
    workers: int = Field(0, ge=0)  # process / ray: workers (actors); 0 = one per CPU

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, v: Any) -> Any:
        """A whole number >= 1 (validated as before), or "auto" (any case): one error line for anything else."""
        if isinstance(v, str) and v.strip().lower() == "auto":
            return "auto"
        try:
            return _BATCH_INT.validate_python(v)
        except ValidationError as e:
            raise ValueError(f"a whole number >= 1, or auto: {e.errors()[0]['msg'].lower()}") from None


_BATCH_INT: TypeAdapter = TypeAdapter(Annotated[int, Field(ge=1)])


class ProviderConfig(_C):
    model: Optional[str] = None
    base_url: Optional[str] = None
    api_key_env: Optional[str] = None  # name of the environment variable holding the key
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0)
    # retries this provider instance may spend in one run, all requests together (null: max_retries per
    # request only); a slow server is sent at most retry_budget repeated requests per run
    retry_budget: Optional[int] = Field(None, ge=0)
    # retry a request that timed out while the server was still answering (a read timeout)? Off: the server
    # is probably still generating, and a retry would queue a second generation beside the abandoned one
    retry_read_timeout: bool = False
    backoff_s: float = Field(1.0, ge=0)
    rate_limit_per_s: Optional[float] = Field(None, gt=0)
    temperature: float = 0.0
    max_tokens: int = Field(512, ge=1)
    # input modalities the endpoint accepts, replacing the provider's defaults (text is always included),
    # e.g. [text, image, audio] for an audio-capable OpenAI-compatible server; null: provider defaults
    capabilities: Optional[list[Literal["text", "image", "audio", "video"]]] = None
    # CPU threads for a local model while it generates (torch.set_num_threads, restored after); null: torch's
    # default. One thread is much faster for a 135M model on a busy machine (no thread-barrier stalls).
    threads: Optional[int] = Field(None, ge=1)


class GenerateConfig(_C):
    type: Literal["mer", "au", "audio", "video", "image"] = "mer"
    task: Literal["emotion", "sentiment"] = "emotion"
    provider: str = "offline"
    threshold: float = Field(0.8, ge=0, le=5)
    peak_distance: int = Field(15, ge=8)
    peak_rule: Literal["mer-factory", "merr"] = "mer-factory"
    au_backend: Literal["auto", "openface", "mediapipe", "pyfeat"] = "auto"
    openface_bin: Optional[str] = None
    video_frames: int = Field(4, ge=1, le=64)
    concurrency: int = Field(4, ge=1)
    # how the samples are run (never what: left out of the generate config hash, as concurrency is): local =
    # this process; ray = a pool of Ray actors (`pip install 'mer-eval[ray]'`), `workers` of them (0: one per CPU)
    engine: Literal["local", "ray"] = "local"
    workers: int = Field(0, ge=0)
    asr_model: str = "whisper-base"
    asr_language: Optional[str] = None  # None: detect; e.g. "en" forces it
    au_rule_table: Literal["mer-factory", "merr"] = "mer-factory"  # table for the au_text pseudo-label
    au_max_frames: int = Field(900, ge=1)  # MediaPipe AU backend: frames analysed at most (evenly spread)
    seed: int = 0


class Config(_C):
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    # metric family -> its parameters; checked against the family's own ``Params`` (mer_eval.metric.MetricParams)
    # when the config loads, so every registered family (built-in or entry point) is configured the same way
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    # provider name -> settings over that provider's own defaults (its ``config_defaults``)
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    gates: Optional[str] = "default"  # name of configs/gates/<name>.yaml or a path
    tolerances: dict[str, float] = Field(default_factory=lambda: {"composite_score": 2.0, "asr_wer": 0.02})

    def provider_config(self, name: str) -> ProviderConfig:
        """A provider's settings: its class's ``config_defaults`` with this config's ``providers.<name>``."""
        from mer_eval.registry import get_provider

        cls = get_provider(name)
        return ProviderConfig.model_validate({**dict(getattr(cls, "config_defaults", {}) or {}),
                                              **dict(self.providers.get(name) or {})})

    def score_metrics(self) -> list[str]:
        """The metric families ``score`` runs: ``score.metrics``, else every built-in family."""
        from mer_eval.registry import default_metrics

        return list(self.score.metrics) if self.score.metrics else default_metrics()

    def metric_params(self, family: str) -> dict[str, Any]:
        """A metric family's parameters as plain values: its ``Params`` defaults with this config's section."""
        from mer_eval.registry import get_metric

        cls = get_metric(family)
        return cls.Params.model_validate(dict(self.metrics.get(family) or {})).model_dump(mode="json")

    def hash(self) -> str:
        """Of what decides the outputs: the score and generate engines and their workers are left out (the same
        config run locally or on Ray hashes the same, as it computes the same)."""
        d = self.model_dump(mode="json")
        for section in ("score", "generate"):
            for k in EXECUTION_ONLY:
                d.get(section, {}).pop(k, None)
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ---- loading -----------------------------------------------------------------------------------

def configs_root():
    """The bundled ``configs`` folder (``mer_eval.configs`` once installed)."""
    return resources.files("mer_eval.configs")


def read_bundled_yaml(relpath: str) -> Any:
    f = configs_root().joinpath(relpath)
    return yaml.safe_load(f.read_text(encoding="utf-8"))


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _parse_set(item: str) -> dict:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. score.batch_size=8")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"--set {item!r}: bad key {key!r}")
    value = yaml.safe_load(raw) if raw.strip() else None
    d: dict = {}
    cur = d
    parts = key.split(".")
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value
    return d


def _allowed_at(loc: tuple) -> list[str]:
    """Field names allowed at the parent of ``loc`` (walks the model tree)."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if model is None or not hasattr(model, "model_fields"):
            return []
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        if hasattr(ann, "model_fields"):
            model = ann
        else:
            args = getattr(ann, "__args__", ())
            model = next((a for a in args if hasattr(a, "model_fields")), None)
    return sorted(model.model_fields) if model is not None and hasattr(model, "model_fields") else []


def format_validation_error(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            lines.append(_unknown_key(key, _allowed_at(loc)))
        elif err["type"] == "literal_error":
            lines.append(f"bad value for '{key}': {err['input']!r}; allowed values: "
                         f"{err.get('ctx', {}).get('expected', '')}")
        else:
            lines.append(f"bad value for '{key}': {err['input']!r} ({err['msg']})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _unknown_key(key: str, allowed: list[str]) -> str:
    """``unknown config key 'a.b'; allowed here: ... (did you mean 'c'?)`` (never an empty list: a key whose
    parent takes no named keys says what the parent is)."""
    import difflib

    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, allowed, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    if not allowed:
        parent = key.rsplit(".", 1)[0] if "." in key else "the top level"
        return f"unknown config key '{key}': '{parent}' takes no key '{leaf}'"
    return f"unknown config key '{key}'; allowed here: {', '.join(sorted(allowed))}{hint}"


def load_config(path: Optional[Path] = None, sets: Optional[list[str]] = None) -> Config:
    data = read_bundled_yaml("default.yaml") or {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        user = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(user, dict):
            raise ConfigError(f"config file {p} must hold a mapping at top level")
        data = _deep_merge(data, user)
    for item in sets or []:
        data = _deep_merge(data, _parse_set(item))
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None
    check_metric_sections(cfg.metrics)
    check_provider_sections(cfg.providers)
    check_composite(cfg.score.composite)
    check_tolerances(cfg.tolerances)
    return cfg


def close_names(name: str, names: list[str]) -> list[str]:
    """The (at most two) names of ``names`` nearest to a misspelt ``name``, for a "did you mean" hint."""
    import difflib

    return difflib.get_close_matches(name, names, n=2)


def check_tolerances(tolerances: dict[str, float]) -> None:
    """``tolerances`` (regress) name outputs some installed family writes, or ``composite_score``: a misspelt
    key would leave the metric at tolerance 0 while the user believes it has the one they wrote."""
    from mer_eval.registry import metric_outputs

    known = sorted(set(metric_outputs()) | {"composite_score"})
    bad = {k: close_names(k, known) for k in tolerances if k not in known}
    if bad:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(
            f"unknown metric 'tolerances.{k}'" + (f"; did you mean {', '.join(near)}?" if near else "")
            for k, near in bad.items()))


def check_composite(name: str) -> None:
    """``score.composite`` names a bundled composite or a YAML file that loads, and every metric it weighs,
    substitutes or scales by is an output some installed family writes: a misspelt component would otherwise
    be "not computed in this run" on every sample and renormalised away, and the composite would rise."""
    from mer_eval.composite import CompositeSpec
    from mer_eval.registry import metric_outputs

    try:
        spec = CompositeSpec.load(name)
    except (ValueError, KeyError, TypeError, OSError, yaml.YAMLError) as e:
        raise ConfigError(f"bad value for 'score.composite': {name!r}: {e}") from None
    known = sorted(metric_outputs())
    named = list(spec.metrics) + list(spec.accuracy) + list(spec.substitutes.values())
    bad = {m: close_names(m, known) for m in dict.fromkeys(named) if m not in known}
    if bad:
        raise ConfigError(f"composite {spec.version} ({name}): " + "; ".join(
            f"no installed metric family writes {m!r}" + (f" (did you mean {', '.join(near)}?)" if near else "")
            for m, near in bad.items()))


def _format_errors(e: ValidationError, prefix: list[str], allowed: list[str]) -> list[str]:
    lines = []
    for err in e.errors():
        key = ".".join(prefix + [str(p) for p in err["loc"]])
        if err["type"] == "extra_forbidden":
            lines.append(_unknown_key(key, allowed))
        elif err["type"] == "literal_error":
            lines.append(f"bad value for '{key}': {err['input']!r}; allowed values: "
                         f"{err.get('ctx', {}).get('expected', '')}")
        else:
            lines.append(f"bad value for '{key}': {err['input']!r} ({err['msg']})")
    return lines


def check_provider_sections(sections: dict[str, dict[str, Any]]) -> None:
    """Each ``providers.<name>`` section: a registered provider, keys of :class:`ProviderConfig`."""
    from mer_eval.registry import available

    known = available("providers")
    lines = []
    for name, sec in sections.items():
        if name not in known:
            lines.append(_unknown_key(f"providers.{name}", sorted(known)) if known else
                         f"unknown provider 'providers.{name}': no provider is registered (is "
                         f"mer_eval.generators installed?)")
            continue
        if sec is not None and not isinstance(sec, dict):
            lines.append(f"bad value for 'providers.{name}': {sec!r} (a mapping of settings)")
            continue
        try:
            ProviderConfig.model_validate(dict(sec or {}))
        except ValidationError as e:
            lines += _format_errors(e, ["providers", name], list(ProviderConfig.model_fields))
    if lines:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def check_metric_sections(sections: dict[str, dict[str, Any]]) -> None:
    """Each ``metrics.<family>`` section against the family's own ``Params`` (built-in or entry point)."""
    from mer_eval.registry import available, get_metric

    known = available("metrics")
    lines = []
    for family, sec in sections.items():
        if family not in known:
            lines.append(_unknown_key(f"metrics.{family}", sorted(known)))
            continue
        if sec is not None and not isinstance(sec, dict):
            lines.append(f"bad value for 'metrics.{family}': {sec!r} (a mapping of parameters)")
            continue
        params = get_metric(family).Params
        try:
            params.model_validate(dict(sec or {}))
        except ValidationError as e:
            lines += _format_errors(e, ["metrics", family], list(params.model_fields))
    if lines:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
