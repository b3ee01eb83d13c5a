"""``mer-eval score``: run every configured metric family over a run's samples, batched, then the composite.

Writes ``OUT/<id>/mer_eval_scores.json``, ``OUT/mer_eval_summary.csv`` (MER-Factory's columns first),
``OUT/scores.parquet`` (long form) and the ``score`` section of ``OUT/run.json``.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

from mer_eval import registry
from mer_eval.cache import Cache
from mer_eval.composite import composite_metric_result, load_spec
from mer_eval.config import Config
from mer_eval.discovery import Dataset, discover
from mer_eval.metric import Metric, ScoreContext
from mer_eval.schema import Fingerprint, MetricResult, ModelRef, Relation, SampleEvaluation, ScoreSection, \
    Status
from mer_eval.store import EVAL_FILE, SCORE_INCOMPLETE, SUMMARY_FILE, RunStore, _open_temp, _umask, \
    atomic_write_json, atomic_write_text

MER_FACTORY_COLUMNS = [
    "sample_id", "distinct1", "distinct2", "repetition_rate", "fkgl", "au_pr", "au_re", "au_f1",
    "clip_image_score", "clap_audio_score", "nli_consistency_score", "nli_entail_rate", "nli_contra_rate",
    "asr_wer", "composite_score",
]
STREAM_CHUNK = 1000  # samples scored, written and released together
KEEP_RESULTS_MAX = 1000  # (one chunk) above this many samples, outcome.results reads scores.parquet back (no details)
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
    metric_rows: Optional[list[dict]] = None  # the console summary's rows, accumulated while streaming
    seconds: float = 0.0
    model_seconds: float = 0.0
    model_seconds_by_family: dict[str, float] = field(default_factory=dict)

    def composites(self, metric: str = "composite_score") -> list[tuple[str, str, Optional[float], Optional[str]]]:
        """``(sample id, status, value or None, reason)`` of ``metric`` for every sample that has it, in results
        order. A streamed run reads only those rows of scores.parquet (projected and filtered), never every
        result back: the console and ``--json`` summaries need only the composites."""
        if isinstance(self.results, _ParquetResults):
            return self.results.rows_of(metric)
        return [(sid, r.status.value, r.value if r.status == Status.ok else None, r.reason)
                for sid, rs in self.results.items() for r in rs if r.metric == metric]

    def frame(self):
        import pandas as pd

        if isinstance(self.results, _ParquetResults):  # a streamed run: the table is on disk
            return load_scores(self.out_dir)
        return pd.DataFrame(_long_rows(self.results, self.families).columns, columns=LONG_COLUMNS)


_GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")  # CUDA, ROCm, WSL


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import sys

    if "torch" not in sys.modules and not any(os.path.exists(p) for p in _GPU_NODES):
        return "cpu"  # no GPU device node: torch (seconds to import) would say the same
    try:
        import torch  # noqa: PLC0415 (lazy: only when a run asks for auto)

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _worst_values(families: dict[str, Metric]) -> dict[str, Optional[float]]:
    """Each output's worst value, the bound of its range on the bad side (None when unbounded there): what an
    abstention counts as in a run's means. The composites' is 0."""
    worst: dict[str, Optional[float]] = {"composite_score": 0.0}
    for m in families.values():
        for o in m.outputs:
            lo, hi = o.range
            worst[o.name] = lo if o.higher_is_better else hi
    return worst


def _output_index(families: dict[str, Metric]) -> dict[str, tuple[str, bool]]:
    idx = {"composite_score": ("composite", True)}
    for fam, m in families.items():
        for o in m.outputs:
            idx[o.name] = (fam, o.higher_is_better)
    return idx


class LongRows:
    """Rows of the long table (:data:`LONG_COLUMNS`), kept as columns: a list of values per column.

    A chunk's rows travel from a worker to the driver: as columns they unpickle in about 1/40 of the time of one
    dict per row (3 ms against 100 ms for 500 samples' 10,000 rows) and go to parquet with ``from_pydict`` (8x
    faster than ``from_pylist``). Read row by row (``for row in rows``, ``rows[i]``) a row is a dict, as before."""

    __slots__ = ("columns",)

    def __init__(self, columns: Optional[dict[str, list]] = None):
        self.columns: dict[str, list] = columns if columns is not None else {c: [] for c in LONG_COLUMNS}

    @classmethod
    def of_tuples(cls, rows: list[tuple]) -> "LongRows":
        """Rows given as tuples in :data:`LONG_COLUMNS` order."""
        if not rows:
            return cls()
        return cls(dict(zip(LONG_COLUMNS, map(list, zip(*rows)))))

    def __len__(self) -> int:
        return len(self.columns["sample_id"])

    def __iter__(self):
        names = list(self.columns)
        for vals in zip(*self.columns.values()):
            yield dict(zip(names, vals))

    def __getitem__(self, i: int) -> dict:
        return {c: col[i] for c, col in self.columns.items()}

    def append(self, row: dict) -> None:
        for c, col in self.columns.items():
            col.append(row.get(c))

    def extend(self, other: "LongRows") -> None:
        for c, col in self.columns.items():
            col.extend(other.columns[c])


def _long_rows(results: dict[str, list[MetricResult]], families: dict[str, Metric]) -> LongRows:
    """The long table's rows of ``results`` (what :meth:`_Stats.add` builds beside the statistics)."""
    rows: list[tuple] = []
    _Stats(families, lists=True).add(results, rows)
    return LongRows.of_tuples(rows)


_STATUS_STR = {s: s.value for s in Status}  # a member's value without the enum descriptor (str hash: C speed)
_RELATION_STR = {r: r.value for r in Relation}


def _judged(r: MetricResult) -> tuple[Optional[str], str]:
    """``(dependence, relation)`` of a result: :func:`mer_eval.evidence.dependence` and ``relation`` in one
    step (typed evidence read directly; older results through the evidence module's rule)."""
    ev = r.evidence
    if ev is not None:
        return (None if ev.independent else f"self-check: {ev.reason}"), _RELATION_STR[ev.relation]
    from mer_eval.evidence import relation

    return dependence(r), _RELATION_STR[relation(r)]


@dataclass
class ChunkResult:
    """One chunk scored: every sample's results (composites included; its ``mer_eval_scores.json`` is written;
    left out, ``{}``, when the caller keeps none), the aggregate families' own results, the model seconds and
    cache hits it took, and its long-table rows and run statistics, computed where the chunk was scored (so a
    worker does that work, and its results need not travel back)."""
    results: dict[str, list[MetricResult]]
    agg: dict[str, dict[str, list[MetricResult]]]
    model_seconds: dict[str, float]
    rows: LongRows
    stats: "_Stats"
    cache_hits: int = 0
    batch_sizes: dict[str, int] = field(default_factory=dict)  # family -> the batch size it ran with (kept)
    batch_size_notes: dict[str, str] = field(default_factory=dict)  # with score.batch_size auto: why that size


@contextlib.contextmanager
def gc_paused():
    """Python's cycle collector off while a chunk is scored (as it was before, after): the chunk's many short-lived
    objects otherwise set off collections that scan everything alive, ~10% of a weight-free chunk's time. What a
    chunk leaves in cycles is bounded by the chunk and collected once it is back on."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class ChunkScorer:
    """Scores chunks of samples: every family, then the composite, and writes each sample's
    ``mer_eval_scores.json``. The families are built once (their models load lazily, once per process), so one
    scorer serves every chunk: in this process (engine ``local``), in each worker process (``process``) and in
    each Ray actor (``ray``, :mod:`mer_eval.engine_ray`), which is why the engines' outputs are the same."""

    def __init__(self, names: list[str], config: Config, use_cache: bool, out_dir: Path):
        self.cache = Cache(Path(config.cache.dir) if config.cache.dir else None) if use_cache else None
        if self.cache is not None:
            self.cache.defer_commits = True  # committed per chunk (flush below), not per row
        self.ctx = ScoreContext(device=resolve_device(config.score.device), batch_size=config.score.batch_size,
                                cache=self.cache, config=config)
        self.families: dict[str, Metric] = {}
        for name in names:
            cls = registry.get_metric(name)
            self.families[name] = cls(config.metric_params(name), self.ctx)
        # families with a dataset-level aggregate return their own results too (kept until the end)
        self.agg_of = [name for name, fam in self.families.items()
                       if type(fam).aggregate is not Metric.aggregate]
        self.spec = load_spec(config.score.composite)
        self.store = RunStore(Path(out_dir))

    def __call__(self, part: list, progress: Optional[dict[str, Any]] = None, keep: bool = True) -> ChunkResult:
        """Score ``part`` (samples, or a :class:`~mer_eval.sample_store.SampleStore`'s packed samples), with its
        long rows and statistics; ``keep=False``: return no per-sample results."""
        with gc_paused():
            return self._score(part, progress, keep)

    def _score(self, part: list, progress: Optional[dict[str, Any]], keep: bool) -> ChunkResult:
        from mer_eval.sample_store import SampleStore

        part = [SampleStore.unpack(x) if isinstance(x, bytes) else x for x in part]
        ms0 = dict(self.ctx.model_seconds)
        hits0 = self.cache.hits if self.cache else 0
        results: dict[str, list[MetricResult]] = {s.id: [] for s in part}
        agg: dict[str, dict[str, list[MetricResult]]] = {}
        try:
            for name, fam in self.families.items():
                self.ctx.progress = progress.get(name) if progress else None
                fam_results = fam.score(part)
                for sid, rs in fam_results.items():
                    results[sid].extend(rs)
                if name in self.agg_of:
                    agg[name] = fam_results
        finally:
            self.ctx.progress = None
        for s in part:
            comp = self.spec.compute(s.id, results[s.id])
            results[s.id].append(composite_metric_result(comp))
            ev = SampleEvaluation(sample_id=s.id, results=results[s.id], composite=comp)
            atomic_write_text(self.store.sample_dir(s.id) / EVAL_FILE, ev.model_dump_json(indent=2) + "\n",
                              fsync=False)
        if self.cache is not None:
            self.cache.flush()
        ms = {k: v - ms0.get(k, 0.0) for k, v in self.ctx.model_seconds.items() if v - ms0.get(k, 0.0)}
        stats = _Stats(self.families, lists=True)
        rows: list[tuple] = []
        stats.add(results, rows)  # statistics and long rows in one pass
        return ChunkResult(results=results if keep else {}, agg=agg, model_seconds=ms,
                           cache_hits=(self.cache.hits - hits0) if self.cache else 0, rows=LongRows.of_tuples(rows),
                           stats=stats,
                           batch_sizes=dict(self.ctx.batch_sizes), batch_size_notes=dict(self.ctx.batch_size_notes))

    def close(self) -> None:
        if self.cache is not None:
            self.cache.flush()
            self.cache.defer_commits = False


def default_workers(workers: int) -> int:
    return int(workers) if workers and workers > 0 else max(1, os.cpu_count() or 1)


def split_even(part: list, k: int) -> list[list]:
    """``part`` in ``k`` contiguous pieces of near-equal size (none empty), in order."""
    k = max(1, min(k, len(part)))
    q, r = divmod(len(part), k)
    out, lo = [], 0
    for i in range(k):
        hi = lo + q + (1 if i < r else 0)
        out.append(part[lo:hi])
        lo = hi
    return out


def merge_chunk_results(pieces: list[ChunkResult]) -> ChunkResult:
    """Pieces of one chunk (in the chunk's order) as one :class:`ChunkResult`."""
    family_of = pieces[0].stats.family_of if pieces else {}
    out = ChunkResult(results={}, agg={}, model_seconds={}, rows=LongRows(),
                      stats=_Stats(family_of=family_of, lists=True))
    for p in pieces:
        out.results.update(p.results)
        out.rows.extend(p.rows)
        out.stats.merge(p.stats)
        for name, rs in p.agg.items():
            out.agg.setdefault(name, {}).update(rs)
        for k, v in p.model_seconds.items():
            out.model_seconds[k] = out.model_seconds.get(k, 0.0) + v
        out.cache_hits += p.cache_hits
        _merge_batch_sizes(out.batch_sizes, out.batch_size_notes, p)
    return out


def _merge_batch_sizes(sizes: dict[str, int], notes: dict[str, str], piece: ChunkResult) -> None:
    """Per family the smallest batch size any piece ran with (every batch of the run fit at it), and its note."""
    for fam, bs in piece.batch_sizes.items():
        if fam not in sizes or bs < sizes[fam]:
            sizes[fam] = bs
            if fam in piece.batch_size_notes:
                notes[fam] = piece.batch_size_notes[fam]


_WORKER: Optional[ChunkScorer] = None


def _worker_init(names: list[str], config: Config, use_cache: bool, out_dir: str) -> None:
    global _WORKER
    _WORKER = ChunkScorer(names, config, use_cache, Path(out_dir))


def _worker_score(part: list, keep: bool) -> ChunkResult:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER(part, keep=keep)


class EngineError(RuntimeError):
    """A score engine could not run (a worker died, Ray is not installed or not reachable): one line."""


def _process_map(parts, names, config, use_cache, out_dir, workers: int, keep: bool = True):
    """Engine ``process``: each chunk split across ``workers`` spawned processes (each builds its own families
    once), pieces run two chunks ahead, chunks yielded in order."""
    from collections import deque
    from concurrent.futures.process import BrokenProcessPool

    from mer_eval.pool import spawn_pool

    pending: deque = deque()
    with spawn_pool(workers, initializer=_worker_init, initargs=(names, config, use_cache, str(out_dir))) as ex:
        it = iter(parts)
        try:
            while True:
                while len(pending) < 2:
                    part = next(it, None)
                    if part is None:
                        break
                    pending.append((part, [ex.submit(_worker_score, p, keep) for p in split_even(part, workers)]))
                if not pending:
                    return
                part, futs = pending.popleft()
                yield part, merge_chunk_results([f.result() for f in futs])
        except BrokenProcessPool as e:
            raise EngineError(f"engine process: a worker process died ({e}); the samples scored so far are "
                              f"cached (when the cache is on): run `mer-eval score` again to resume") from None


def score_dataset(
    dataset: Dataset,
    out_dir: Path,
    config: Config,
    metrics: Optional[list[str]] = None,
    use_cache: Optional[bool] = None,
    progress: bool = False,
    console: Any = None,
    keep_results: Optional[bool] = None,
    chunk_size: Optional[int] = None,
    engine: Optional[str] = None,
    workers: Optional[int] = None,
) -> ScoreOutcome:
    """Score in chunks of ``chunk_size`` samples (default :data:`STREAM_CHUNK`): each chunk is scored by every
    family, its ``mer_eval_scores.json`` files and its row group of scores.parquet are written, and it is released;
    only per-metric counts and values stay. ``keep_results`` (default: runs up to :data:`KEEP_RESULTS_MAX`
    samples) keeps every full result in ``outcome.results``; otherwise it reads them back from the parquet.

    ``engine`` (default ``config.score.engine``): ``local`` computes the chunks here; ``process`` in a pool of
    ``workers`` processes; ``ray`` over Ray Data (:mod:`mer_eval.engine_ray`). Whichever computes them, the
    chunks are written here, in the same order, so the files are the same."""
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc)
    names = list(metrics or config.score_metrics())
    use_cache = config.cache.enabled if use_cache is None else use_cache
    engine = engine or config.score.engine
    n_workers = default_workers(config.score.workers if workers is None else workers)
    out_dir = Path(out_dir)
    scorer = ChunkScorer(names, config, use_cache, out_dir)  # engine local scores with it; all use its families
    families = scorer.families
    samples = dataset.samples
    n = len(samples)
    keep = n <= KEEP_RESULTS_MAX if keep_results is None else keep_results
    size = max(1, int(chunk_size or STREAM_CHUNK))
    # one chunk: dataset order, as before; several: sample-id order, so the summary CSV (sorted by id) is
    # appended chunk by chunk and never needs the whole table in memory (indices are sorted, not samples)
    from mer_eval.sample_store import sample_ids

    ids = sample_ids(samples)
    order = list(range(n)) if n <= size else sorted(range(n), key=ids.__getitem__)
    kept: dict[str, list[MetricResult]] = {sid: [] for sid in ids} if keep else {}
    agg_results: dict[str, dict[str, list[MetricResult]]] = {name: {} for name in scorer.agg_of}
    stats = _Stats(families)
    spec = scorer.spec
    store = RunStore(out_dir)
    model_seconds: dict[str, float] = {}
    hits = 0
    batch_sizes: dict[str, int] = {}  # family -> the smallest batch size any chunk ran with, and why (auto)
    batch_notes: dict[str, str] = {}

    prog = None
    tasks: dict[str, Any] = {}
    if progress and samples:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        prog = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False)
        prog.start()
        tasks = {name: prog.add_task(name, total=n) for name in families}

    from mer_eval.sample_store import SampleStore

    def parts():  # a compact run's samples travel packed; the scorer unpacks them where it runs
        get = samples.packed if isinstance(samples, SampleStore) else samples.__getitem__
        for lo in range(0, n, size):
            yield [get(i) for i in order[lo:lo + size]]

    def computed():
        if engine == "local" or not n:
            advance = {name: (lambda k, t=tasks[name]: prog.advance(t, k)) for name in families} if prog else None
            for part in parts():
                yield part, scorer(part, advance, keep=keep)
        elif engine == "process":
            yield from _process_map(parts(), names, config, use_cache, out_dir, n_workers, keep=keep)
        elif engine == "ray":
            from mer_eval.engine_ray import ray_map  # noqa: PLC0415 (ray is an extra)

            yield from ray_map(parts(), names, config, use_cache, out_dir, n_workers, keep=keep)
        else:
            raise EngineError(f"unknown score engine {engine!r}: local, process or ray")

    with store.locked():
        # from here until run.json is written the run's score files are being replaced: the marker says so, and
        # stays when the process is killed (load_scores refuses the run until a score run completes)
        atomic_write_json(out_dir / SCORE_INCOMPLETE, {
            "pid": os.getpid(), "started": started.isoformat(),
            "reason": "mer-eval score started rewriting this run's score files and did not finish (killed or "
                      "failed): per-sample scores, scores.parquet, the summary CSV and run.json may mix two "
                      "attempts; run `mer-eval score` again"})
        writer = _LongWriter(out_dir / "scores.parquet")
        summary = _SummaryWriter(out_dir / SUMMARY_FILE)
        try:
            for part, cr in computed():
                results = cr.results
                if prog and engine != "local":
                    for t in tasks.values():
                        prog.advance(t, len(part))
                for name, rs in cr.agg.items():
                    agg_results.setdefault(name, {}).update(rs)
                for k, v in cr.model_seconds.items():
                    model_seconds[k] = model_seconds.get(k, 0.0) + v
                hits += cr.cache_hits
                _merge_batch_sizes(batch_sizes, batch_notes, cr)
                writer.write(cr.rows)  # summarised where the chunk was computed
                stats.merge(cr.stats)
                summary.write(cr.rows, list(stats.metrics_order))  # while the next chunk is scored
                if keep:
                    for sid, rs in results.items():
                        kept[sid] = rs
            aggregates: dict[str, dict[str, Any]] = {
                name: fam.aggregate(samples, agg_results.get(name, {})) for name, fam in families.items()}
            seconds = time.perf_counter() - t0
            outcome = ScoreOutcome(out_dir=out_dir, dataset=dataset, results=kept, families=families,
                                   section=ScoreSection(), aggregates=aggregates, seconds=seconds,
                                   model_seconds=sum(model_seconds.values()),
                                   model_seconds_by_family=dict(model_seconds))
            outcome.section = _section(outcome, spec, started, hits, stats)
            outcome.section.batch_sizes = batch_sizes
            outcome.section.batch_size_notes = batch_notes
            outcome.metric_rows = stats.metric_rows()
            writer.close()
            _write(outcome, config, writer, stats, summary)
        finally:
            writer.abort()
            summary.abort()
            if prog:
                prog.stop()
            scorer.close()
    if not keep:
        outcome.results = _ParquetResults(out_dir / "scores.parquet", ids)
    return outcome


class _Stats:
    """What the run section and the console summary need, accumulated chunk by chunk (nothing per result).

    A run's statistics keep running ``[sum, count]`` values; a chunk's (``lists=True``, computed where the chunk
    was scored) keep its values in order, and :meth:`merge` adds them one by one, so the sums are the same, to
    the last bit, whichever engine computed the chunks and however they were split."""

    def __init__(self, families: Optional[dict[str, Metric]] = None, lists: bool = False,
                 family_of: Optional[dict[str, tuple[str, bool]]] = None):
        self.family_of = family_of if family_of is not None else _output_index(families or {})
        self.worst = _worst_values(families or {})  # output -> the value an abstention counts as in the means
        self.lists = lists
        self.counts: dict[str, dict[str, int]] = {}
        self.values: dict[str, list] = {}  # of the independent ok values that are finite (the run's means)
        self.left_out: dict[str, dict[str, Any]] = {}
        self.models: dict[str, ModelRef] = {}
        self.ok_values: dict[str, list] = {}  # of every ok value (the console table's ok count)
        self.reasons: dict[str, dict[str, int]] = {}
        self.first_model: dict[str, Optional[str]] = {}
        self.metrics_order: dict[str, None] = {}

    def _put(self, table: dict[str, list], metric: str, v: Optional[float], finite_only: bool) -> None:
        acc = table.setdefault(metric, [] if self.lists else [0.0, 0])
        if finite_only and (v is None or not math.isfinite(v)):
            return
        if self.lists:
            acc.append(v)
        else:
            acc[0] += v
            acc[1] += 1

    def add(self, results: dict[str, list[MetricResult]], rows: Optional[list[tuple]] = None) -> None:
        """Count ``results``; with ``rows``, append their long-table rows too, as tuples in :data:`LONG_COLUMNS`
        order (one pass, each result's evidence decision made once)."""
        family_of, counts, reasons = self.family_of, self.counts, self.reasons
        order, models, first_model = self.metrics_order, self.models, self.first_model
        put, status_str = self._put, _STATUS_STR
        for sid, rs in results.items():
            for r in rs:
                metric, status, model = r.metric, r.status, r.model
                st = status_str[status]
                c = counts.get(metric)
                if c is None:
                    order.setdefault(metric, None)
                    c = counts[metric] = dict.fromkeys(_STATUS_STR.values(), 0)
                c[st] += 1
                dep, rel = _judged(r)
                if st == "ok":
                    put(self.ok_values, metric, r.value, finite_only=False)
                    if dep is None:
                        put(self.values, metric, r.value, finite_only=True)
                    else:
                        lo = self.left_out.setdefault(metric, {"n": 0, "reasons": {}})
                        lo["n"] += 1
                        lo["reasons"][dep] = lo["reasons"].get(dep, 0) + 1
                else:
                    rr = reasons.setdefault(metric, {})
                    key = f"{st}: {r.reason}"
                    rr[key] = rr.get(key, 0) + 1
                if model is not None:
                    if model.id:
                        models.setdefault(family_of.get(metric, (metric,))[0], model)
                    if first_model.get(metric) is None:
                        first_model[metric] = model.id
                if rows is not None:
                    fam, hib = family_of.get(metric, ("unknown", True))
                    rows.append((  # LONG_COLUMNS
                        sid, metric, fam, r.value, st, r.reason,
                        model.id if model else None, model.sha256 if model else None,
                        r.metric_version, hib, r.cached, dep is None, dep, rel,
                    ))

    def merge(self, piece: "_Stats") -> None:
        """Add a chunk's statistics (``lists=True``) as if its results had been :meth:`add`-ed here."""
        assert piece.lists, "merge a chunk's statistics (lists=True)"
        for m in piece.metrics_order:
            self.metrics_order.setdefault(m, None)
        for m, c in piece.counts.items():
            mine = self.counts.setdefault(m, {s.value: 0 for s in Status})
            for k, v in c.items():
                mine[k] += v
        for table, theirs in ((self.ok_values, piece.ok_values), (self.values, piece.values)):
            for m, vals in theirs.items():
                acc = table.setdefault(m, [] if self.lists else [0.0, 0])
                if self.lists:
                    acc.extend(vals)
                else:  # added one by one, in order (as _put does): the same sum to the last bit
                    total = acc[0]
                    for v in vals:
                        total += v
                    acc[0] = total
                    acc[1] += len(vals)
        for m, lo in piece.left_out.items():
            mine = self.left_out.setdefault(m, {"n": 0, "reasons": {}})
            mine["n"] += lo["n"]
            for why, k in lo["reasons"].items():
                mine["reasons"][why] = mine["reasons"].get(why, 0) + k
        for m, rr in piece.reasons.items():
            mine = self.reasons.setdefault(m, {})
            for key, k in rr.items():
                mine[key] = mine.get(key, 0) + k
        for fam, ref in piece.models.items():
            self.models.setdefault(fam, ref)
        for m, mid in piece.first_model.items():
            if self.first_model.get(m) is None:
                self.first_model[m] = mid

    def _strict_mean(self, metric: str, total: float, k: int) -> Optional[float]:
        """``total / k`` with the metric's abstentions counted too, each at the output's worst value (not answering
        is never scored better than answering wrong, as in the strict composite); None when there is nothing to
        average, or when there are abstentions and the output has no worst value (an unbounded range)."""
        n_abst = self.counts.get(metric, {}).get("abstained", 0)
        if n_abst:
            worst = self.worst.get(metric)
            if worst is None:
                return None
            total, k = total + worst * n_abst, k + n_abst
        return total / k if k else None

    def mean(self, metric: str) -> Optional[float]:
        """The mean of a metric's independent, finite ok values and its abstentions at the worst value
        (:meth:`_strict_mean`); None when there are none."""
        total, k = self.values.get(metric, (0.0, 0))
        return self._strict_mean(metric, total, k)

    def abstained_in_means(self) -> dict[str, dict[str, Any]]:
        """Per metric with abstentions: how many, and the value each counts as in its mean (None: the output has no
        worst value, so the mean is None rather than one that leaves them out)."""
        return {m: {"n": c["abstained"], "counted_as": self.worst.get(m)}
                for m, c in self.counts.items() if c.get("abstained")}

    def metric_rows(self) -> list[dict]:
        """The rows of :func:`mer_eval.summary.metric_table_rows`, without holding the results."""
        from collections import Counter

        rows = []
        for metric, c in self.counts.items():
            _, ok_n = self.ok_values.get(metric, (0.0, 0))
            # the mean of run.json's means: self-check values left out (counted here), abstentions at the worst
            rows.append({"metric": metric, "ok": ok_n, "n": sum(c.values()), "mean": self.mean(metric),
                         "abstained": c.get("abstained", 0), "self_checks": self.left_out.get(metric, {}).get("n", 0),
                         "model": self.first_model.get(metric),
                         "reasons": Counter(self.reasons.get(metric, {})).most_common(3)})
        return rows


LONG_SCHEMA = None  # built on first use (pyarrow is imported lazily)


def _long_schema():
    global LONG_SCHEMA
    if LONG_SCHEMA is None:
        import pyarrow as pa

        s, b = pa.string(), pa.bool_()
        types = {"value": pa.float64(), "higher_is_better": b, "cached": b, "independent": b}
        LONG_SCHEMA = pa.schema([(c, types.get(c, s)) for c in LONG_COLUMNS])
    return LONG_SCHEMA


class _LongWriter:
    """``scores.parquet`` written one row group per chunk into a temporary file, renamed into place at the end
    (a run killed midway leaves the previous file, never half of a new one)."""

    def __init__(self, path: Path):
        import tempfile

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.close(fd)
        self.tmp = Path(tmp)
        self._w = None
        self.closed = False

    def write(self, rows: LongRows) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # straight from the columns (half the time of a DataFrame first; pandas reads back the same frame)
        table = pa.Table.from_pydict(rows.columns, schema=_long_schema())
        if self._w is None:
            self._w = pq.ParquetWriter(self.tmp, table.schema)
        self._w.write_table(table)

    def close(self) -> None:
        if self._w is None:
            self.write(LongRows())
        self._w.close()
        self.closed = True

    def chunks(self):
        """The long table back, one row group (one chunk of samples) at a time."""
        import pyarrow.parquet as pq

        f = pq.ParquetFile(self.tmp)
        for i in range(f.num_row_groups):
            yield f.read_row_group(i).to_pandas()

    def commit(self) -> None:
        with open(self.tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self._w is not None and not self.closed:
            self._w.close()
        if self.tmp.exists():
            self.tmp.unlink()


def summary_csv(rows: Union[LongRows, list[dict]], metrics_order: list[str], header: bool) -> Optional[str]:
    """The summary CSV lines of one chunk's long rows, as :func:`wide_summary` + ``to_csv(index=False)`` write them
    (samples by id; each metric's value, then each one's status and reason), built without pandas; None when a
    sample has a metric twice (then the pivot's own rules decide: the caller falls back to it)."""
    import csv
    import io

    if not isinstance(rows, LongRows):
        rows = LongRows({c: [r.get(c) for r in rows] for c in LONG_COLUMNS})
    cols = rows.columns
    by: dict[str, dict[str, tuple]] = {}  # sample -> metric -> (value, status, reason)
    for sid, metric, v, st, why in zip(cols["sample_id"], cols["metric"], cols["value"], cols["status"],
                                       cols["reason"]):
        d = by.get(sid)
        if d is None:
            d = by[sid] = {}
        if metric in d:
            return None
        d[metric] = (v, st, why)
    value_cols = MER_FACTORY_COLUMNS[1:] + [m for m in metrics_order if m not in MER_FACTORY_COLUMNS]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")  # pandas' to_csv: the csv module, minimal quoting, "\n"
    if header:
        w.writerow(["sample_id", *value_cols, *[f"{m}_{k}" for m in metrics_order for k in ("status", "reason")]])
    for sid in sorted(by):
        d = by[sid]
        line = [sid]
        for c in value_cols:
            r = d.get(c)
            v = r[0] if r is not None else None
            line.append("" if v is None or v != v else repr(float(v)))  # NaN and None: empty, as pandas
        for m in metrics_order:
            r = d.get(m)
            line.append("" if r is None or r[1] is None else r[1])
            line.append("" if r is None or r[2] is None else r[2])
        w.writerow(line)
    return buf.getvalue()


class _SummaryWriter:
    """``mer_eval_summary.csv`` written chunk by chunk as the chunks come back (:func:`summary_csv`), into a
    temporary file renamed into place at the end. Its columns are the run's metrics as known at the first chunk;
    when a later chunk brings another metric (or a sample has a metric twice) it stops, and :func:`_write` builds
    the file from scores.parquet's row groups instead."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tmp = self.path.parent / f".{self.path.name}.{os.getpid()}.stream.tmp"
        self.order: Optional[list[str]] = None
        self.ok = True
        self._f = None

    def write(self, rows: LongRows, order: list[str]) -> None:
        if not self.ok or not len(rows):
            return
        if self.order is not None and order != self.order:
            self.ok = False  # the columns changed: the parquet path writes the file
            return
        text = summary_csv(rows, order, header=self.order is None)
        if text is None:
            self.ok = False
            return
        if self._f is None:  # created exclusively, never through a link left there (as atomic writes)
            self._f = os.fdopen(_open_temp(str(self.tmp)), "w", encoding="utf-8", newline="")
        self._f.write(text)
        self.order = order

    def complete(self, order: list[str]) -> bool:
        """Whether the file holds every chunk with the run's final columns."""
        return self.ok and self._f is not None and order == self.order

    def commit(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self._f is not None and not self._f.closed:
            self._f.close()
        if self.tmp.exists():
            self.tmp.unlink()


class _ParquetResults(Mapping):
    """``outcome.results`` of a large run: read back from ``scores.parquet`` one row group at a time (results
    without their details and evidence: those are in ``<id>/mer_eval_scores.json``)."""

    def __init__(self, path: Path, ids: list[str]):
        self.path = Path(path)
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self):
        return iter(self.ids)

    def __getitem__(self, sid: str) -> list[MetricResult]:
        for k, rs in self.items():
            if k == sid:
                return rs
        raise KeyError(sid)

    def values(self):
        return (rs for _, rs in self.items())

    def rows_of(self, metric: str) -> list[tuple[str, str, Optional[float], Optional[str]]]:
        """``(sample id, status, value, reason)`` of one metric, read with only those columns, one row group (one
        chunk) at a time, so the memory it takes is a chunk's, as the scoring's."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        cols = ("sample_id", "status", "value", "reason")
        f = pq.ParquetFile(self.path)
        out = []
        for i in range(f.num_row_groups):
            g = f.read_row_group(i, columns=["metric", *cols])
            g = g.filter(pc.equal(g.column("metric"), metric))
            for sid, st, v, why in zip(*(g.column(c).to_pylist() for c in cols)):
                ok = st == Status.ok.value and v is not None and v == v
                out.append((sid, st, v if ok else None, why))
        return out

    def items(self):
        import pyarrow.parquet as pq

        f = pq.ParquetFile(self.path)
        cur: Optional[str] = None
        acc: list[MetricResult] = []
        for i in range(f.num_row_groups):
            for row in f.read_row_group(i).to_pylist():
                if row["sample_id"] != cur:
                    if cur is not None:
                        yield cur, acc
                    cur, acc = row["sample_id"], []
                model = ModelRef.model_construct(id=row["model"], sha256=row["model_sha256"]) if row["model"] \
                    else None
                v = row["value"]
                acc.append(MetricResult.model_construct(
                    sample_id=cur, metric=row["metric"], value=None if v is None or v != v else v,
                    status=Status(row["status"]), reason=row["reason"], model=model,
                    metric_version=row["metric_version"], cached=bool(row["cached"]), details={}, evidence=None))
        if cur is not None:
            yield cur, acc


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
        out["composite_score"] = Fingerprint(metric_version=spec.version, params_hash=spec.spec_hash)
    return out


def _section(o: ScoreOutcome, spec: Any, started: datetime, hits: int, stats: "_Stats") -> ScoreSection:
    composite_version = spec.version
    versions = {}
    for fam, m in o.families.items():
        for out in m.outputs:
            versions[out.name] = m.version
    versions["composite_score"] = composite_version
    counts = stats.counts
    return ScoreSection(
        metrics=list(o.families), metric_versions=versions, composite_version=composite_version,
        models=stats.models, counts_by_status=counts, means={k: stats.mean(k) for k in counts},
        abstained_in_means=stats.abstained_in_means(),
        left_out=stats.left_out, fingerprints=fingerprints(o.families, spec),
        started=started, finished=datetime.now(timezone.utc), seconds=round(o.seconds, 3),
        model_seconds=round(o.model_seconds, 3), cache_hits=hits,
    )


def _write(o: ScoreOutcome, config: Config, writer: "_LongWriter", stats: "_Stats",
           summary: Optional["_SummaryWriter"] = None) -> None:
    """Called with the run lock held, after every chunk's ``mer_eval_scores.json`` and row group are written: the
    summary CSV (written chunk by chunk while the run was scored, when its columns are the run's; else from the
    row groups, one at a time), then scores.parquet and run.json are put in place."""
    import tempfile

    store = RunStore(o.out_dir)
    order = list(stats.metrics_order)
    if summary is not None and summary.complete(order):
        writer.commit()
        summary.commit()
    else:
        if summary is not None:
            summary.abort()
        fd, tmp = tempfile.mkstemp(prefix="." + SUMMARY_FILE + ".", suffix=".tmp", dir=o.out_dir)
        os.fchmod(fd, 0o666 & ~_umask())
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                first = True
                for long in writer.chunks():
                    if long.empty and not first:
                        continue
                    f.write(wide_summary(long, order).to_csv(index=False, header=first))
                    first = False
                f.flush()
                os.fsync(f.fileno())
            writer.commit()
            os.replace(tmp, o.out_dir / SUMMARY_FILE)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    manifest = store.read_manifest()
    if manifest is None:  # a run mer-eval did not generate (e.g. MER-Factory's): the manifest is score's
        manifest = store.new_manifest(command="score", input=str(o.dataset.root),
                                      config=config.model_dump(mode="json"), config_hash=config.hash())
    o.section.config_hash = config.hash()
    manifest.score = o.section
    manifest.extra["score_aggregates"] = o.aggregates
    # what discovery could not read or skipped (and why): those inputs are in no score, gate or export
    manifest.extra["input_notes"] = list(o.dataset.notes[:INPUT_NOTES_MAX])
    manifest.extra["input_notes_total"] = len(o.dataset.notes)
    store.write_manifest(manifest)
    (o.out_dir / SCORE_INCOMPLETE).unlink(missing_ok=True)  # every score file is this attempt's now


INPUT_NOTES_MAX = 1000  # discovery notes kept in run.json (the total is kept beside them)


def wide_summary(long, metrics_order: Optional[list[str]] = None):
    """One row per sample: MER-Factory's columns first, then ours, then ``<metric>_status`` / ``_reason``.
    ``metrics_order``: the whole run's metrics in order of first appearance, when ``long`` is one chunk."""
    import pandas as pd

    if long.empty:
        return pd.DataFrame(columns=MER_FACTORY_COLUMNS)
    values = long.pivot_table(index="sample_id", columns="metric", values="value", aggfunc="first", dropna=False)
    status = long.pivot(index="sample_id", columns="metric", values="status")
    reason = long.pivot(index="sample_id", columns="metric", values="reason")
    metrics_order = list(metrics_order) if metrics_order is not None else list(dict.fromkeys(long["metric"]))
    ours = [m for m in metrics_order if m not in MER_FACTORY_COLUMNS]
    out = pd.DataFrame(index=status.index)
    for col in MER_FACTORY_COLUMNS[1:] + ours:
        out[col] = values[col] if col in values.columns else None
    for m in metrics_order:
        out[f"{m}_status"] = status[m] if m in status.columns else None
        out[f"{m}_reason"] = reason[m] if m in reason.columns else None
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
    if (Path(run_dir) / SCORE_INCOMPLETE).is_file():  # a FileNotFoundError: no complete scores file is there
        raise FileNotFoundError(f"{run_dir}: the last `mer-eval score` did not finish (killed or failed), its "
                                f"score files may mix two attempts: run `mer-eval score {run_dir}` again")
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: run `mer-eval score {run_dir}` first")
    df = pd.read_parquet(p)
    for col in LONG_COLUMNS:
        if col not in df.columns:  # files from older versions keep loading
            df[col] = None
    return df
