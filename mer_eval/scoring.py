"""``mer-eval score``: run every configured metric family over a run's samples, batched, then the composite.

Writes ``OUT/<id>/mer_eval_scores.json``, ``OUT/mer_eval_summary.csv`` (MER-Factory's columns first),
``OUT/scores.parquet`` (long form) and the ``score`` section of ``OUT/run.json``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from mer_eval import registry
from mer_eval.cache import Cache
from mer_eval.composite import composite_metric_result, load_spec
from mer_eval.config import Config
from mer_eval.discovery import Dataset, discover
from mer_eval.metric import Metric, ScoreContext
from mer_eval.schema import Fingerprint, MetricResult, ModelRef, SampleEvaluation, ScoreSection, Status
from mer_eval.store import EVAL_FILE, SUMMARY_FILE, RunStore, atomic_write_bytes, atomic_write_text

MER_FACTORY_COLUMNS = [
    "sample_id", "distinct1", "distinct2", "repetition_rate", "fkgl", "au_pr", "au_re", "au_f1",
    "clip_image_score", "clap_audio_score", "nli_consistency_score", "nli_entail_rate", "nli_contra_rate",
    "asr_wer", "composite_score",
]
LONG_COLUMNS = ["sample_id", "metric", "family", "value", "status", "reason", "model", "model_sha256",
                "metric_version", "higher_is_better", "cached", "independent", "dependence", "relation"]


def dependence(r: MetricResult) -> Optional[str]:
    """Why a value is not evidence (a self-check), or None when it counts: :func:`mer_eval.evidence.counts`."""
    from mer_eval.evidence import dependence as _dep

    return _dep(r)


@dataclass
class ScoreOutcome:
    out_dir: Path
    dataset: Dataset
    results: dict[str, list[MetricResult]]  # sample id -> all results incl. composite_score
    families: dict[str, Metric]
    section: ScoreSection
    aggregates: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    model_seconds: float = 0.0
    model_seconds_by_family: dict[str, float] = field(default_factory=dict)

    def frame(self):
        import pandas as pd

        return pd.DataFrame(_long_rows(self.results, self.families), columns=LONG_COLUMNS)


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch  # noqa: PLC0415 (lazy: only when a run asks for auto)

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _output_index(families: dict[str, Metric]) -> dict[str, tuple[str, bool]]:
    idx = {"composite_score": ("composite", True), "composite_lenient": ("composite", True)}
    for fam, m in families.items():
        for o in m.outputs:
            idx[o.name] = (fam, o.higher_is_better)
    return idx


def _long_rows(results: dict[str, list[MetricResult]], families: dict[str, Metric]) -> list[dict]:
    from mer_eval.evidence import relation

    idx = _output_index(families)
    rows = []
    for sid, rs in results.items():
        for r in rs:
            fam, hib = idx.get(r.metric, ("unknown", True))
            dep = dependence(r)
            rows.append({
                "sample_id": sid, "metric": r.metric, "family": fam, "value": r.value,
                "status": r.status.value, "reason": r.reason,
                "model": r.model.id if r.model else None,
                "model_sha256": r.model.sha256 if r.model else None,
                "metric_version": r.metric_version, "higher_is_better": hib, "cached": r.cached,
                "independent": dep is None, "dependence": dep, "relation": relation(r).value,
            })
    return rows


def _mean(vals: list[float]) -> Optional[float]:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def score_dataset(
    dataset: Dataset,
    out_dir: Path,
    config: Config,
    metrics: Optional[list[str]] = None,
    use_cache: Optional[bool] = None,
    progress: bool = False,
    console: Any = None,
) -> ScoreOutcome:
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc)
    names = list(metrics or config.score_metrics())
    use_cache = config.cache.enabled if use_cache is None else use_cache
    cache = Cache(Path(config.cache.dir) if config.cache.dir else None) if use_cache else None
    hits0 = cache.hits if cache else 0
    ctx = ScoreContext(device=resolve_device(config.score.device), batch_size=config.score.batch_size,
                       cache=cache, config=config)
    families: dict[str, Metric] = {}
    for name in names:
        cls = registry.get_metric(name)
        families[name] = cls(config.metric_params(name), ctx)
    samples = dataset.samples
    results: dict[str, list[MetricResult]] = {s.id: [] for s in samples}
    aggregates: dict[str, dict[str, Any]] = {}

    prog = None
    if progress and samples:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        prog = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False)
        prog.start()
    try:
        for name, fam in families.items():
            task = prog.add_task(name, total=len(samples)) if prog else None
            ctx.progress = (lambda n, t=task: prog.advance(t, n)) if prog else None
            fam_results = fam.score(samples)
            for sid, rs in fam_results.items():
                results[sid].extend(rs)
            aggregates[name] = fam.aggregate(samples, fam_results)
    finally:
        if prog:
            prog.stop()
        ctx.progress = None

    spec = load_spec(config.score.composite)
    evaluations = {}
    for s in samples:
        comp = spec.compute(s.id, results[s.id], mode="strict")
        lenient = spec.compute(s.id, results[s.id], mode="lenient")
        results[s.id].append(composite_metric_result(comp))
        results[s.id].append(composite_metric_result(lenient))
        evaluations[s.id] = SampleEvaluation(sample_id=s.id, results=results[s.id], composite=comp,
                                             composite_lenient=lenient)

    seconds = time.perf_counter() - t0
    outcome = ScoreOutcome(out_dir=Path(out_dir), dataset=dataset, results=results, families=families,
                           section=ScoreSection(), aggregates=aggregates, seconds=seconds,
                           model_seconds=sum(ctx.model_seconds.values()),
                           model_seconds_by_family=dict(ctx.model_seconds))
    outcome.section = _section(outcome, spec, started, cache.hits - hits0 if cache else 0)
    _write(outcome, evaluations, config)
    return outcome


def fingerprints(families: dict[str, Metric], spec: Any = None) -> dict[str, Fingerprint]:
    """Per output metric: version, parameter hash, model identity and a hash of the code that computes it.
    Two values are comparable only when these agree (``compare`` / ``regress`` check them)."""
    from mer_eval.cache import stable_hash

    out: dict[str, Fingerprint] = {}
    for fam, m in families.items():
        ref = m.model_ref()
        fp = Fingerprint(metric_version=m.version, params_hash=stable_hash(m.public_params())[:16],
                         model_id=ref.id if ref else None, model_sha256=ref.sha256 if ref else None,
                         model_revision=ref.revision if ref else None, code_hash=m.code_hash())
        for o in m.outputs:
            out[o.name] = fp
    if spec is not None:
        for name in ("composite_score", "composite_lenient"):
            out[name] = Fingerprint(metric_version=spec.version, params_hash=spec.spec_hash)
    return out


def _section(o: ScoreOutcome, spec: Any, started: datetime, hits: int) -> ScoreSection:
    from mer_eval.evidence import counts as counts_as_evidence

    composite_version = spec.version
    versions = {}
    models: dict[str, ModelRef] = {}
    for fam, m in o.families.items():
        for out in m.outputs:
            versions[out.name] = m.version
    versions["composite_score"] = composite_version
    versions["composite_lenient"] = composite_version
    family_of = _output_index(o.families)
    counts: dict[str, dict[str, int]] = {}
    values: dict[str, list[float]] = {}
    left_out: dict[str, dict[str, Any]] = {}
    for rs in o.results.values():
        for r in rs:
            c = counts.setdefault(r.metric, {s.value: 0 for s in Status})
            c[r.status.value] += 1
            if r.status == Status.ok:
                ok, why = counts_as_evidence(r)
                if ok:
                    values.setdefault(r.metric, []).append(r.value)
                else:
                    lo = left_out.setdefault(r.metric, {"n": 0, "reasons": {}})
                    lo["n"] += 1
                    lo["reasons"][why] = lo["reasons"].get(why, 0) + 1
            if r.model is not None and r.model.id:
                models.setdefault(family_of.get(r.metric, (r.metric,))[0], r.model)
    return ScoreSection(
        metrics=list(o.families), metric_versions=versions, composite_version=composite_version, models=models,
        counts_by_status=counts, means={k: _mean(values.get(k, [])) for k in counts}, left_out=left_out,
        fingerprints=fingerprints(o.families, spec),
        started=started, finished=datetime.now(timezone.utc), seconds=round(o.seconds, 3),
        model_seconds=round(o.model_seconds, 3), cache_hits=hits,
    )


def _write(o: ScoreOutcome, evaluations: dict[str, SampleEvaluation], config: Config) -> None:
    import io

    store = RunStore(o.out_dir)
    with store.locked():
        for sid, ev in evaluations.items():
            atomic_write_text(store.sample_dir(sid) / EVAL_FILE, ev.model_dump_json(indent=2) + "\n")
        long = o.frame()
        buf = io.BytesIO()
        long.to_parquet(buf, index=False)
        atomic_write_bytes(o.out_dir / "scores.parquet", buf.getvalue())
        atomic_write_text(o.out_dir / SUMMARY_FILE, wide_summary(long).to_csv(index=False))
        manifest = store.read_manifest()
        if manifest is None:  # a run mer-eval did not generate (e.g. MER-Factory's): the manifest is score's
            manifest = store.new_manifest(command="score", input=str(o.dataset.root),
                                          config=config.model_dump(mode="json"), config_hash=config.hash())
        o.section.config_hash = config.hash()
        manifest.score = o.section
        manifest.extra["score_aggregates"] = o.aggregates
        store.write_manifest(manifest)


def wide_summary(long):
    """One row per sample: MER-Factory's columns first, then ours, then ``<metric>_status`` / ``_reason``."""
    import pandas as pd

    if long.empty:
        return pd.DataFrame(columns=MER_FACTORY_COLUMNS)
    values = long.pivot_table(index="sample_id", columns="metric", values="value", aggfunc="first", dropna=False)
    status = long.pivot(index="sample_id", columns="metric", values="status")
    reason = long.pivot(index="sample_id", columns="metric", values="reason")
    metrics_order = list(dict.fromkeys(long["metric"]))
    ours = [m for m in metrics_order if m not in MER_FACTORY_COLUMNS]
    out = pd.DataFrame(index=status.index)
    for col in MER_FACTORY_COLUMNS[1:] + ours:
        out[col] = values[col] if col in values.columns else None
    for m in metrics_order:
        out[f"{m}_status"] = status[m]
        out[f"{m}_reason"] = reason[m]
    out = out.reset_index().rename(columns={"index": "sample_id"})
    return out


def score_run(
    input_path: Path,
    config: Config,
    out_dir: Optional[Path] = None,
    metrics: Optional[list[str]] = None,
    use_cache: Optional[bool] = None,
    progress: bool = False,
    label_file: Optional[Path] = None,
    transcripts: Optional[Path] = None,
    console: Any = None,
) -> ScoreOutcome:
    ds = discover(Path(input_path), label_file=label_file, transcripts=transcripts)
    out = Path(out_dir) if out_dir is not None else (Path(input_path) if Path(input_path).is_dir()
                                                      else Path(input_path).parent)
    return score_dataset(ds, out, config, metrics=metrics, use_cache=use_cache, progress=progress,
                         console=console)


def load_scores(run_dir: Path):
    """The long-form score table of a scored run (``scores.parquet``)."""
    import pandas as pd

    p = Path(run_dir) / "scores.parquet"
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: run `mer-eval score {run_dir}` first")
    df = pd.read_parquet(p)
    for col in LONG_COLUMNS:
        if col not in df.columns:  # files from older versions keep loading
            df[col] = None
    return df
