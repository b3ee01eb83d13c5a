"""The metric interface every family in ``mer_eval.metrics`` implements.

A family (one file under ``metrics/``) declares its metadata as class attributes, says per sample
which input is missing (``missing_inputs``), loads its model lazily (``load``, raising
:class:`ModelUnavailable` with the model id and where it looked) and scores a *batch* of samples in
``compute``. :meth:`Metric.score` does the rest for every family alike: ``not_applicable`` results,
``unavailable`` when the model cannot load, ``error`` with the exception's message when a batch fails,
and the content-hash result cache.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Optional, Union

from pydantic import BaseModel, ConfigDict

from mer_eval.schema import MetricResult, ModelRef, Sample, Status


class MetricParams(BaseModel):
    """A metric family's parameters: declared once, on the family (``Metric.Params``), with their defaults.

    ``configs/default.yaml`` and ``--set metrics.<family>.<key>=...`` are checked against it (unknown keys are
    an error naming the keys allowed), so a built-in and an entry-point metric are configured the same way."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelUnavailable(RuntimeError):
    """The weights or backend a metric needs are not here; the message says which and where it looked."""


@dataclass(frozen=True)
class OutputSpec:
    name: str
    higher_is_better: bool
    range: tuple[Optional[float], Optional[float]]
    formula: str
    primary: bool = True  # shown in summary tables; secondary outputs still go to every file


AUTO_BATCH_START = 128  # score.batch_size auto on CUDA: each family's first batch size (halved on OOM, down to 1)
AUTO_BATCH_CPU = 16  # score.batch_size auto on the CPU: the default batch size


@dataclass
class ScoreContext:
    device: str = "cpu"
    batch_size: Union[int, str] = 16  # samples per batch, or "auto" (Metric.batch_size)
    cache: Any = None  # mer_eval.cache.Cache or None
    config: Any = None  # mer_eval.config.Config
    progress: Optional[Callable[[int], None]] = None  # advance(n)
    model_seconds: dict[str, float] = field(default_factory=dict)
    # family -> the batch size it used in this process (with "auto": the size that worked, kept for the run)
    batch_sizes: dict[str, int] = field(default_factory=dict)
    # family -> why that size, when batch_size is "auto" (e.g. "auto on cpu: the default 16 ...")
    batch_size_notes: dict[str, str] = field(default_factory=dict)


class Metric:
    name: ClassVar[str]
    version: ClassVar[str]
    outputs: ClassVar[tuple[OutputSpec, ...]]
    requires: ClassVar[str]  # one line: which inputs it needs
    description: ClassVar[str] = ""
    Params: ClassVar[type[MetricParams]] = MetricParams  # typed parameters with their defaults
    models: ClassVar[tuple[Any, ...]] = ()  # mer_eval.models.ModelSpec of the models it loads (for `models`)
    model_uses: ClassVar[str] = ""  # one line for `validate`: which model, and when
    run_by_default: ClassVar[bool] = True  # `score` runs it when score.metrics is not set (built-ins only)
    order: ClassVar[int] = 100  # position among the default families (tables, summary columns)

    def __init__(self, params: Optional[dict[str, Any]] = None, ctx: Optional[ScoreContext] = None):
        self.cfg = self.Params.model_validate(dict(params or {}))
        self.params: dict[str, Any] = self.cfg.model_dump(mode="json")
        self.ctx = ctx or ScoreContext()
        self._loaded = False
        self._load_error: Optional[str] = None

    # ---- to implement -------------------------------------------------------------------------
    def missing_inputs(self, sample: Sample) -> Optional[str]:
        """Why this sample cannot be scored (``not_applicable``), or None."""
        return None

    def abstention(self, sample: Sample) -> Optional[str]:
        """Why the annotation did not answer what this family checks (``abstained``: the worst value), or None.
        Asked after :meth:`missing_inputs` and before any model loads: an unanswered part needs no model to be
        found, and is reported even where the family's weights are missing."""
        return None

    def load(self) -> None:
        """Load models once. Raise ModelUnavailable(reason) when weights/backends are missing."""

    def model_ref(self) -> Optional[ModelRef]:
        return None

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        """The content that determines this sample's results (texts, file sha256s). None: don't cache."""
        return None

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        raise NotImplementedError

    def aggregate(self, samples: list[Sample], results: dict[str, list[MetricResult]]) -> dict[str, Any]:
        """Dataset-level figures (e.g. accuracy, macro-F1) beyond per-sample means; {} when none."""
        return {}

    # ---- helpers for implementations ------------------------------------------------------------
    @classmethod
    def code_hash(cls) -> Optional[str]:
        """sha256 (16 hex) of the file that defines this family: part of its comparability fingerprint and
        of its cache keys, so changed code never serves or compares with numbers the old code computed."""
        import hashlib
        import inspect
        from pathlib import Path

        try:
            f = inspect.getsourcefile(cls)
        except TypeError:
            return None
        if not f or not Path(f).is_file():
            return None
        return hashlib.sha256(Path(f).read_bytes()).hexdigest()[:16]

    @classmethod
    def output_names(cls) -> list[str]:
        return [o.name for o in cls.outputs]

    def ok(self, sample_id: str, metric: str, value: float, **kw: Any) -> MetricResult:
        kw.setdefault("model", self.model_ref())
        kw.setdefault("params", self._result_params())
        return MetricResult.ok(sample_id, metric, value, self.version, **kw)

    def not_ok(self, sample_id: str, status: Status, reason: str, outputs: Optional[Iterable[str]] = None,
               **kw: Any) -> list[MetricResult]:
        kw.setdefault("params", self._result_params())
        return [
            MetricResult.missing(sample_id, m, status, reason, self.version, **kw)
            for m in (outputs or self.output_names())
        ]

    def public_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if not k.startswith("_")}

    def _result_params(self) -> dict[str, Any]:
        """:meth:`public_params` built once (the parameters are fixed when the family is made): every result
        carries them, and a result's validation copies the dict, so results never share it."""
        p = self.__dict__.get("_public_params")
        if p is None:
            p = self._public_params = self.public_params()
        return p

    def timed(self, fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        """Run a model call and add its wall time to the context's pure model time."""
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            self.ctx.model_seconds[self.name] = self.ctx.model_seconds.get(self.name, 0.0) + (
                time.perf_counter() - t0
            )

    def batch_size(self) -> int:
        """This family's effective batch size: the number ``score.batch_size`` gives; with ``auto``, 16 on the
        CPU, and on CUDA 128 at first, halved by :meth:`score` on each CUDA out-of-memory error and kept (per
        process) once a batch fits. Families that mini-batch inside ``compute`` read it, so the halving reaches
        their model calls too. Recorded in ``ctx.batch_sizes``."""
        ctx = self.ctx
        kept = ctx.batch_sizes.get(self.name)
        if not _is_auto(ctx.batch_size):
            bs = max(1, int(ctx.batch_size or 1))
        elif kept is not None:
            return kept
        elif self._autotuning():
            bs = AUTO_BATCH_START
            ctx.batch_size_notes[self.name] = (f"auto on {ctx.device}: started at {bs}, halved on each CUDA "
                                               f"out-of-memory error; the size that worked is kept")
        else:
            bs = AUTO_BATCH_CPU
            ctx.batch_size_notes[self.name] = (f"auto on {ctx.device}: the default {bs} (autotuning runs "
                                               f"on CUDA only)")
        if kept != bs:
            ctx.batch_sizes[self.name] = bs
        return bs

    def _autotuning(self) -> bool:
        return _is_auto(self.ctx.batch_size) and str(self.ctx.device).startswith("cuda")

    def _shrink_batch(self, tried: int, error: BaseException) -> int:
        """After a CUDA out-of-memory error on a batch of ``tried`` samples: empty the CUDA cache, halve this
        family's batch size and return it (retry the same samples, at most that many). 0 when it cannot shrink:
        not autotuning, not an out-of-memory error, or already at 1 (the batch is reported as ``error``)."""
        if not (self._autotuning() and _is_cuda_oom(error)) or tried <= 1:
            return 0
        _empty_cuda_cache()
        new = max(1, min(tried, self.batch_size()) // 2)
        self.ctx.batch_sizes[self.name] = new
        self.ctx.batch_size_notes[self.name] = (f"auto on {self.ctx.device}: started at {AUTO_BATCH_START}, "
                                                f"halved to {new} after CUDA out of memory at {tried}")
        return new

    # ---- the shared driver ----------------------------------------------------------------------
    def ensure_loaded(self) -> Optional[str]:
        if not self._loaded and self._load_error is None:
            try:
                self.load()
                self._loaded = True
            except ModelUnavailable as e:
                self._load_error = str(e)
        return self._load_error

    def _cache_key(self, sample: Sample) -> Optional[str]:
        cache = self.ctx.cache
        if cache is None:
            return None
        inputs = self.cache_key_inputs(sample)
        if inputs is None:
            return None
        ref = self.model_ref()
        return cache.key(
            namespace=f"metric:{self.name}",
            version=f"{self.version}+{self.code_hash()}",
            model=(ref.id, ref.sha256) if ref else None,
            params=self.public_params(),
            # the sample id is part of the key: a hit never carries another sample's id or file paths
            inputs={"sample_id": sample.id, "inputs": inputs},
        )

    def score(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        """Score all samples: every sample gets one result per output, whatever happens."""
        out: dict[str, list[MetricResult]] = {}
        todo: list[Sample] = []
        for s in samples:
            if s.generation_error:  # no annotation was ever written: it answered nothing
                why = f"no annotation: generate failed ({s.generation_error})"
                out[s.id] = self.not_ok(s.id, Status.abstained, why)
                self._advance(1)
                continue
            why = self.missing_inputs(s)
            if why:
                out[s.id] = self.not_ok(s.id, Status.not_applicable, why)
                self._advance(1)
            elif (why := self.abstention(s)):
                out[s.id] = self.not_ok(s.id, Status.abstained, why)
                self._advance(1)
            else:
                todo.append(s)
        if not todo:
            return out
        load_error = self.ensure_loaded()
        if load_error:
            for s in todo:
                out[s.id] = self.not_ok(s.id, Status.unavailable, load_error)
            self._advance(len(todo))
            return out
        keys: dict[str, Optional[str]] = {}
        misses: list[Sample] = []
        for s in todo:
            key = self._cache_key(s)
            keys[s.id] = key
            hit = _rebase(self.ctx.cache.get(key), s) if key is not None else None
            if hit is not None:
                out[s.id] = [MetricResult.model_validate({**r, "sample_id": s.id, "cached": True}) for r in hit]
                self._advance(1)
            else:
                misses.append(s)
        i = 0
        while i < len(misses):
            # after a CUDA out-of-memory error the same samples again: _shrink_batch kept a size below the batch
            # that failed, so the retries end (at size 1 the batch is reported)
            batch = misses[i : i + self.batch_size()]
            try:
                res = self.compute(batch)
            except ModelUnavailable as e:
                res = {s.id: self.not_ok(s.id, Status.unavailable, str(e)) for s in batch}
            except Exception as e:  # noqa: BLE001 - a failing batch is reported per sample (error), never scored
                if self._shrink_batch(len(batch), e):
                    continue  # batch_size auto on CUDA: the same samples again, in a smaller batch
                tb = traceback.extract_tb(e.__traceback__)
                where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
                res = {
                    s.id: self.not_ok(s.id, Status.error, f"{type(e).__name__}: {e}{where}") for s in batch
                }
            for s in batch:
                results = res.get(s.id) or self.not_ok(
                    s.id, Status.error, f"{self.name} returned no result for this sample"
                )
                out[s.id] = results
                key = keys.get(s.id)
                if key is not None and all(r.status in (Status.ok, Status.not_applicable) for r in results):
                    self.ctx.cache.put(key, {"paths": _sample_paths(s),
                                             "results": [r.model_dump(mode="json") for r in results]})
            self._advance(len(batch))
            i += len(batch)
        return out

    def _advance(self, n: int) -> None:
        if self.ctx.progress is not None:
            self.ctx.progress(n)


def _is_auto(batch_size: Any) -> bool:
    return isinstance(batch_size, str) and batch_size.strip().lower() == "auto"


def _is_cuda_oom(e: BaseException) -> bool:
    """A CUDA out-of-memory error: ``torch.cuda.OutOfMemoryError`` (torch already imported; never imported here),
    or a RuntimeError whose message says "out of memory"."""
    import sys

    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None) if torch is not None else None
    if isinstance(oom, type) and isinstance(e, oom):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def _empty_cuda_cache() -> None:
    """``torch.cuda.empty_cache()`` only when torch is already imported and CUDA is available (a no-op elsewhere)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except RuntimeError:  # freeing the cache is best effort (a CUDA error here): the retry reports what still fails
        pass


def _sample_paths(sample: Sample) -> dict[str, str]:
    """The files and folder a sample's results may name, by role (``video``, ``ann:mer``, ``folder``...)."""
    out = {k: str(v) for k, v in sample.media().items()}
    out.update({f"ann:{k}": str(v) for k, v in sample.annotation_files.items()})
    if sample.folder is not None:
        out["folder"] = str(sample.folder)
    return out


def _rebase(hit: Any, sample: Sample) -> Optional[list[dict]]:
    """A cached entry's results with the paths of the sample they were computed for (the key is the content,
    so that may be a copy of this sample in another run) replaced by this sample's own, role by role; None (a
    miss) when an old path has no counterpart here or the entry has another layout. A hit never names another
    run's files."""
    if not isinstance(hit, dict) or not isinstance(hit.get("results"), list):
        return None  # entries written before paths were recorded: recomputed once
    old, new = hit.get("paths") or {}, _sample_paths(sample)
    pairs = []
    for role, was in old.items():
        if role not in new:
            if was and was in json.dumps(hit["results"]):
                return None
            continue
        if was and was != new[role]:
            pairs.append((was, new[role]))
    pairs.sort(key=lambda p: -len(p[0]))  # a file before the folder holding it

    def sub(v: Any) -> Any:
        if isinstance(v, str):
            for a, b in pairs:
                v = v.replace(a, b)
            return v
        if isinstance(v, list):
            return [sub(x) for x in v]
        if isinstance(v, dict):
            return {k: sub(x) for k, x in v.items()}
        return v

    return sub(hit["results"]) if pairs else hit["results"]
