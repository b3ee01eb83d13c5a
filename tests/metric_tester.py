"""``MetricTester``: the checks every metric family must pass, built-in or third-party (torchmetrics' idea).

A family is a :class:`mer_eval.metric.Metric` subclass; the tester drives it only through the public metric API
(its class attributes, ``Params``, ``missing_inputs``, ``cache_key_inputs`` and the shared driver
:meth:`Metric.score`), so it runs unchanged on a family from another package. Every ``check_*`` method raises
``AssertionError`` naming the family, the sample and the output at fault, and returns what it scored so a test can
assert more.

Usage::

    from metric_tester import MetricTester

    t = MetricTester()                        # or MetricTester(make_ctx=..., atol=1e-6)
    t.check_metadata(MyMetric)                # 1. name, version, outputs, ranges, Params
    t.check_results(MyMetric, samples)        # 2. one result per output, status/value invariants
    t.check_batch_invariance(MyMetric, samples)           # 3. batch sizes 1, 2, len(samples) agree
    t.check_cache(MyMetric, samples, tmp_path)            # 4. cache round trip, a changed text misses
    t.check_not_applicable(MyMetric)                      # 5a. an empty Sample is not_applicable
    t.check_unavailable(MyMetric, samples, config=cfg_without_model)   # 5b. a missing model: unavailable
    t.check_error(MyMetric, samples)                      # 5c. compute raising: error, never a value
    t.check_reference(MyMetric, samples, reference)       # 6. values equal an independent implementation
    t.run_all(MyMetric, samples, tmp_path)                # 1-4 and 5a/5c in one call

Common keyword arguments of the ``check_*`` methods:

``config``
    a :class:`mer_eval.config.Config` (e.g. ``load_config(sets=["models.paths.clip=..."])``) put in the
    :class:`ScoreContext`; the family's parameters are its ``Params`` validated from ``config.metrics[<name>]``.
``params``
    a dict of parameters that replaces the config's section (the family need not be registered).
``statuses``
    the statuses the family may produce here (default: every :class:`Status`).

``make_ctx`` (constructor) builds every context: ``make_ctx(config=..., batch_size=..., cache=...) ->
ScoreContext``; the default is ``ScoreContext(device="cpu", ...)``. ``atol`` (constructor) is the absolute
tolerance for values compared across batch sizes (0: identical; a batched model may need ~1e-6).

Samples must have unique ids and should be real data; checks that need a sample the family can score
(``missing_inputs(sample)`` and ``abstention(sample)`` None) fail when there is none, so a check never passes by scoring nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mer_eval.metric import Metric, MetricParams, ModelUnavailable, OutputSpec, ScoreContext
from mer_eval.schema import Annotation, MetricResult, Sample, Status

Results = dict[str, list[MetricResult]]
CacheableStatuses = (Status.ok, Status.not_applicable)  # what the driver stores in the result cache
UNKNOWN_PARAM = "mer_eval_tester_no_such_param"


def default_ctx(*, config: Any = None, batch_size: int = 16, cache: Any = None) -> ScoreContext:
    return ScoreContext(device="cpu", batch_size=batch_size, cache=cache, config=config)


def changed_texts(sample: Sample) -> Sample:
    """The default input change of :meth:`MetricTester.check_cache`: every non-empty annotation text (and the
    reference transcript) gets a sentence appended, so whatever text a family keys its cache on differs."""
    tail = " The tester changed this text."
    ann = {k: (v + tail if isinstance(v, str) and v.strip() else v)
           for k, v in sample.annotation.model_dump().items()}
    ann["chronological_emotion_peaks"] = [p + tail for p in sample.annotation.chronological_emotion_peaks]
    upd: dict[str, Any] = {"annotation": Annotation.model_validate(ann)}
    if sample.reference_transcript:
        upd["reference_transcript"] = sample.reference_transcript + tail
    return sample.model_copy(update=upd)


class MetricTester:
    """The shared checks; see the module docstring for the API."""

    def __init__(self, make_ctx: Callable[..., ScoreContext] = default_ctx, atol: float = 0.0):
        self.make_ctx = make_ctx
        self.atol = float(atol)

    # ---- building and scoring -------------------------------------------------------------------------
    @staticmethod
    def params_for(metric_cls: type[Metric], config: Any = None, params: dict | None = None) -> dict[str, Any]:
        if params is not None:
            return dict(params)
        section = getattr(config, "metrics", None) or {}
        return metric_cls.Params.model_validate(dict(section.get(metric_cls.name) or {})).model_dump(mode="json")

    def build(self, metric_cls: type[Metric], *, config: Any = None, params: dict | None = None,
              batch_size: int = 16, cache: Any = None) -> Metric:
        ctx = self.make_ctx(config=config, batch_size=batch_size, cache=cache)
        assert isinstance(ctx, ScoreContext), f"make_ctx returned {type(ctx).__name__}, not a ScoreContext"
        return metric_cls(self.params_for(metric_cls, config, params), ctx)

    def score(self, metric_cls: type[Metric], samples: list[Sample], *, config: Any = None,
              params: dict | None = None, batch_size: int | None = None, cache: Any = None,
              metric: Metric | None = None) -> tuple[Metric, Results]:
        """Score ``samples`` in one driver call (batch size default: all at once); returns (metric, results)."""
        m = metric or self.build(metric_cls, config=config, params=params,
                                 batch_size=batch_size or max(1, len(samples)), cache=cache)
        return m, m.score(list(samples))

    # ---- 1. metadata --------------------------------------------------------------------------------------
    def check_metadata(self, metric_cls: type[Metric]) -> None:
        n = getattr(metric_cls, "__name__", repr(metric_cls))
        assert isinstance(metric_cls, type) and issubclass(metric_cls, Metric), f"{n} is not a Metric subclass"
        name = metric_cls.__dict__.get("name", getattr(metric_cls, "name", None))
        assert isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_.\-]+", name), f"{n}: bad name {name!r}"
        for attr in ("version", "requires"):
            v = getattr(metric_cls, attr, None)
            assert isinstance(v, str) and v.strip(), f"{name}: {attr} must be a non-empty string, got {v!r}"
        assert isinstance(getattr(metric_cls, "description", ""), str), f"{name}: description must be a string"
        outs = getattr(metric_cls, "outputs", None)
        assert isinstance(outs, tuple) and outs, f"{name}: outputs must be a non-empty tuple of OutputSpec"
        names = [o.name for o in outs]
        assert len(set(names)) == len(names), f"{name}: duplicate output names {names}"
        assert metric_cls.output_names() == names, f"{name}: output_names() disagrees with outputs"
        for o in outs:
            assert isinstance(o, OutputSpec), f"{name}: output {o!r} is not an OutputSpec"
            assert isinstance(o.name, str) and o.name.strip(), f"{name}: an output has no name"
            assert isinstance(o.higher_is_better, bool), f"{name}.{o.name}: higher_is_better must be a bool"
            assert isinstance(o.formula, str) and o.formula.strip(), f"{name}.{o.name}: no formula"
            assert isinstance(o.range, tuple) and len(o.range) == 2, f"{name}.{o.name}: range must be (lo, hi)"
            lo, hi = o.range
            for b in (lo, hi):
                assert b is None or (isinstance(b, (int, float)) and math.isfinite(b)), (
                    f"{name}.{o.name}: range bound {b!r} must be None or a finite number")
            assert lo is None or hi is None or lo <= hi, f"{name}.{o.name}: range {o.range} is empty"
        assert isinstance(metric_cls.order, int) and isinstance(metric_cls.run_by_default, bool), (
            f"{name}: order must be an int and run_by_default a bool")
        for spec in metric_cls.models:
            assert isinstance(getattr(spec, "key", None), str) and spec.key, f"{name}: model spec {spec!r} has no key"
        # parameters: declared once, defaults valid, unknown keys rejected
        P = metric_cls.Params
        assert isinstance(P, type) and issubclass(P, MetricParams), f"{name}: Params must subclass MetricParams"
        defaults = P().model_dump(mode="json")
        assert P.model_validate(defaults).model_dump(mode="json") == defaults, f"{name}: Params defaults do not round-trip"
        from pydantic import ValidationError

        try:
            P.model_validate({UNKNOWN_PARAM: 1})
        except ValidationError as e:
            assert UNKNOWN_PARAM in str(e), f"{name}: the error for an unknown parameter does not name it: {e}"
        else:
            raise AssertionError(f"{name}: Params accepted the unknown parameter {UNKNOWN_PARAM!r}")
        try:
            metric_cls({UNKNOWN_PARAM: 1})
        except ValidationError:
            pass
        else:
            raise AssertionError(f"{name}: the metric accepted the unknown parameter {UNKNOWN_PARAM!r}")
        m = metric_cls()
        assert m.params == defaults, f"{name}: Metric() params {m.params} differ from Params defaults {defaults}"
        h = metric_cls.code_hash()
        assert isinstance(h, str) and re.fullmatch(r"[0-9a-f]{16}", h or ""), f"{name}: code_hash() {h!r}"
        assert metric_cls.code_hash() == h, f"{name}: code_hash() is not stable"

    # ---- 2. results and invariants ------------------------------------------------------------------------
    def check_invariants(self, metric_cls: type[Metric], samples: list[Sample], results: Results,
                         statuses: Iterable[Status] | None = None) -> None:
        """Exactly one result per output per sample, and the status/value rules (no scoring here)."""
        name = metric_cls.name
        allowed = set(statuses) if statuses is not None else set(Status)
        ids = [s.id for s in samples]
        assert set(results) == set(ids), (
            f"{name}: results for {sorted(set(results) ^ set(ids))} do not match the samples given")
        specs = {o.name: o for o in metric_cls.outputs}
        for s in samples:
            got = [r.metric for r in results[s.id]]
            assert sorted(got) == sorted(specs), f"{name}/{s.id}: outputs {got}, expected one each of {list(specs)}"
            for r in results[s.id]:
                where = f"{name}/{s.id}/{r.metric}"
                assert isinstance(r, MetricResult), f"{where}: {type(r).__name__} is not a MetricResult"
                assert r.sample_id == s.id, f"{where}: sample_id {r.sample_id!r}"
                assert r.metric_version == metric_cls.version, f"{where}: metric_version {r.metric_version!r}"
                assert r.status in allowed, f"{where}: status {r.status.value} not among {sorted(a.value for a in allowed)}"
                if r.status == Status.ok:
                    assert isinstance(r.value, (int, float)) and math.isfinite(r.value), f"{where}: ok value {r.value!r}"
                    lo, hi = specs[r.metric].range
                    assert (lo is None or r.value >= lo) and (hi is None or r.value <= hi), (
                        f"{where}: value {r.value} outside the declared range {specs[r.metric].range}")
                else:
                    assert r.value is None, f"{where}: status {r.status.value} carries value {r.value!r}"
                    assert isinstance(r.reason, str) and r.reason.strip(), f"{where}: status {r.status.value} without a reason"

    def check_results(self, metric_cls: type[Metric], samples: list[Sample], *, config: Any = None,
                      params: dict | None = None, statuses: Iterable[Status] | None = None) -> Results:
        ids = [s.id for s in samples]
        assert samples and len(set(ids)) == len(ids), f"samples must be non-empty with unique ids, got {ids}"
        m = self.build(metric_cls, config=config, params=params, batch_size=max(1, len(samples)))
        advanced: list[int] = []
        m.ctx.progress = advanced.append
        _, res = self.score(metric_cls, samples, metric=m)
        self.check_invariants(metric_cls, samples, res, statuses)
        assert sum(advanced) == len(samples), (
            f"{metric_cls.name}: progress advanced {sum(advanced)} for {len(samples)} samples")
        return res

    # ---- 3. batch-size invariance -------------------------------------------------------------------------
    def check_batch_invariance(self, metric_cls: type[Metric], samples: list[Sample], *, config: Any = None,
                               params: dict | None = None, batch_sizes: Iterable[int] | None = None) -> Results:
        sizes = sorted(set(batch_sizes or (1, 2, len(samples))))
        runs = {bs: self.score(metric_cls, samples, config=config, params=params, batch_size=bs)[1] for bs in sizes}
        first = runs[sizes[0]]
        for bs in sizes[1:]:
            for s in samples:
                a, b = _by_metric(first[s.id]), _by_metric(runs[bs][s.id])
                assert a.keys() == b.keys(), f"{metric_cls.name}/{s.id}: outputs differ at batch size {bs}"
                for k in a:
                    _assert_same(_dump(a[k]), _dump(b[k]), self.atol,
                                 f"{metric_cls.name}/{s.id}/{k}: batch size {sizes[0]} vs {bs}")
        return first

    # ---- 4. cache round trip ------------------------------------------------------------------------------
    def check_cache(self, metric_cls: type[Metric], samples: list[Sample], cache_dir: Path, *, config: Any = None,
                    params: dict | None = None, change: Callable[[Sample], Sample] = changed_texts) -> Results:
        """Score twice with one :class:`mer_eval.cache.Cache`: the second run serves every cacheable sample
        (``cache_key_inputs`` not None, scored, every status ok / not_applicable) with ``cached=True`` and the
        same results, recomputes the rest; then ``change(sample)`` of a cached sample misses."""
        from mer_eval.cache import Cache

        name = metric_cls.name
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        assert not any(Path(cache_dir).iterdir()), f"check_cache needs an empty folder, {cache_dir} is not"

        def run(ss: list[Sample]) -> tuple[Metric, Results]:
            return self.score(metric_cls, ss, config=config, params=params, cache=Cache(cache_dir))

        m, first = run(samples)
        _, second = run(samples)
        self.check_invariants(metric_cls, samples, second)
        cached_ids = []
        for s in samples:
            assert not any(r.cached for r in first[s.id]), f"{name}/{s.id}: cached in a fresh cache"
            cacheable = (m.missing_inputs(s) is None and m.cache_key_inputs(s) is not None
                         and all(r.status in CacheableStatuses for r in first[s.id]))
            for r in second[s.id]:
                assert r.cached == cacheable, (
                    f"{name}/{s.id}/{r.metric}: cached={r.cached} on the second run, expected {cacheable} "
                    f"(first statuses {[x.status.value for x in first[s.id]]})")
            a, b = _by_metric(first[s.id]), _by_metric(second[s.id])
            for k in a:
                assert _dump(a[k]) == _dump(b[k]), f"{name}/{s.id}/{k}: the cache returned another result"
            if cacheable:
                cached_ids.append(s.id)
        assert cached_ids, f"{name}: no sample was cacheable, so the cache round trip checked nothing"
        changed = [change(s) for s in samples if s.id in cached_ids]
        _, third = run(changed)
        for s in changed:
            assert not any(r.cached for r in third[s.id]), f"{name}/{s.id}: a changed input was served from the cache"
        return first

    # ---- 5. status paths ----------------------------------------------------------------------------------
    def check_not_applicable(self, metric_cls: type[Metric], sample: Sample | None = None, *, config: Any = None,
                             params: dict | None = None) -> Results:
        """``sample`` (default: an empty Sample) lacks the family's inputs: every output is not_applicable with
        ``missing_inputs``' reason, and the driver neither loads a model nor calls ``compute``."""
        s = sample or Sample(id="tester-empty")
        m = self.build(metric_cls, config=config, params=params)
        why = m.missing_inputs(s)
        assert isinstance(why, str) and why.strip(), (
            f"{metric_cls.name}: missing_inputs({s.id}) is {why!r}; a sample without inputs must say why")

        def must_not_run(*a: Any, **k: Any) -> Any:
            raise AssertionError(f"{metric_cls.name}: the driver ran load/compute for a not_applicable sample")

        m.load, m.compute = must_not_run, must_not_run  # type: ignore[method-assign]
        res = m.score([s])
        self.check_invariants(metric_cls, [s], res, statuses=[Status.not_applicable])
        assert all(r.reason == why for r in res[s.id]), f"{metric_cls.name}: reason differs from missing_inputs"
        return res

    def _applicable(self, m: Metric, samples: list[Sample], what: str) -> list[Sample]:
        ok = [s for s in samples if m.missing_inputs(s) is None and m.abstention(s) is None]
        assert ok, f"{m.name}: {what} needs a sample the family can score; all {len(samples)} lack inputs"
        return ok

    def check_unavailable(self, metric_cls: type[Metric], samples: list[Sample], *, config: Any = None,
                          params: dict | None = None, outputs: Iterable[str] | None = None,
                          where: Callable[[Sample], bool] | None = None,
                          mentions: str | None = None) -> Results:
        """With ``config`` pointing the family's model at a missing path, ``outputs`` (default: all) of every
        scorable sample (and ``where(sample)``) are unavailable, the reason naming ``mentions`` when given; such
        results are never cached."""
        from tempfile import TemporaryDirectory

        from mer_eval.cache import Cache

        name = metric_cls.name
        outs = list(outputs or metric_cls.output_names())
        with TemporaryDirectory() as d:
            m = self.build(metric_cls, config=config, params=params, cache=Cache(Path(d)))
            todo = [s for s in self._applicable(m, samples, "check_unavailable") if where is None or where(s)]
            assert todo, f"{name}: check_unavailable: no scorable sample matches `where`"
            _, res = self.score(metric_cls, samples, metric=m)
            self.check_invariants(metric_cls, samples, res)
            for s in todo:
                got = _by_metric(res[s.id])
                for o in outs:
                    r = got[o]
                    assert r.status == Status.unavailable, (
                        f"{name}/{s.id}/{o}: {r.status.value} ({r.reason}) with the model missing, expected unavailable")
                    assert mentions is None or mentions in (r.reason or ""), (
                        f"{name}/{s.id}/{o}: the reason does not say where it looked ({mentions!r}): {r.reason}")
            _, again = self.score(metric_cls, samples, config=config, params=params, cache=Cache(Path(d)))
            for s in todo:
                assert not any(r.cached for r in again[s.id]), f"{name}/{s.id}: an unavailable result was cached"
        return res

    def check_error(self, metric_cls: type[Metric], samples: list[Sample], *, config: Any = None,
                    params: dict | None = None) -> Results:
        """``compute`` raising is reported per sample as ``error`` naming the exception (never a value, never
        cached); ``ModelUnavailable`` raised there is ``unavailable``; a sample ``compute`` forgets is ``error``."""
        from tempfile import TemporaryDirectory

        from mer_eval.cache import Cache

        name = metric_cls.name
        with TemporaryDirectory() as d:
            m = self.build(metric_cls, config=config, params=params, batch_size=2, cache=Cache(Path(d)))
            todo = self._applicable(m, samples, "check_error")
            load_error = m.ensure_loaded()
            assert load_error is None, f"{name}: check_error needs a config whose model loads: {load_error}"
            na = [s for s in samples if s not in todo]

            class Boom(RuntimeError):
                pass

            def boom(batch: list[Sample]) -> Results:
                raise Boom(f"tester: compute failed on {len(batch)} samples")

            m.compute = boom  # type: ignore[method-assign]
            _, res = self.score(metric_cls, samples, metric=m)
            self.check_invariants(metric_cls, samples, res)
            for s in todo:
                for r in res[s.id]:
                    assert r.status == Status.error and r.value is None, f"{name}/{s.id}/{r.metric}: {r.status.value}"
                    assert "Boom: tester: compute failed" in (r.reason or ""), f"{name}/{s.id}: reason {r.reason!r}"
            for s in na:  # never computed: what missing_inputs / abstention said
                want = Status.not_applicable if m.missing_inputs(s) else Status.abstained
                assert all(r.status == want for r in res[s.id]), f"{name}/{s.id}: not {want.value}"
            # nothing of the failed run was cached: scoring again with the real compute recomputes
            _, again = self.score(metric_cls, todo, config=config, params=params, cache=Cache(Path(d)))
            for s in todo:
                assert not any(r.cached for r in again[s.id]), f"{name}/{s.id}: an error result was cached"

        def unavailable(batch: list[Sample]) -> Results:
            raise ModelUnavailable("tester: the backend went away")

        m2 = self.build(metric_cls, config=config, params=params)
        m2.compute = unavailable  # type: ignore[method-assign]
        _, res2 = self.score(metric_cls, todo, metric=m2)
        for s in todo:
            assert all(r.status == Status.unavailable and "backend went away" in (r.reason or "")
                       for r in res2[s.id]), f"{name}/{s.id}: ModelUnavailable in compute is not unavailable"
        m3 = self.build(metric_cls, config=config, params=params)
        m3.compute = lambda batch: {}  # type: ignore[method-assign]
        _, res3 = self.score(metric_cls, todo, metric=m3)
        for s in todo:
            assert all(r.status == Status.error and "no result" in (r.reason or "") for r in res3[s.id]), (
                f"{name}/{s.id}: a sample compute returned nothing for is not an error")
        return res

    # ---- 6. reference implementation ----------------------------------------------------------------------
    def check_reference(self, metric_cls: type[Metric], samples: list[Sample],
                        reference: Callable[[Sample], dict[str, float | None]], *, config: Any = None,
                        params: dict | None = None, rel: float = 1e-9, abs_tol: float = 1e-12) -> Results:
        """``reference(sample)`` -> {output: expected value, or None when the output must not be ok}; outputs it
        leaves out are not compared. At least one ok value must be compared."""
        _, res = self.score(metric_cls, samples, config=config, params=params)
        compared = 0
        for s in samples:
            got = _by_metric(res[s.id])
            for out, want in reference(s).items():
                r = got[out]
                where = f"{metric_cls.name}/{s.id}/{out}"
                if want is None:
                    assert r.status != Status.ok, f"{where}: ok ({r.value}) where the reference has no value"
                    continue
                assert r.status == Status.ok, f"{where}: {r.status.value} ({r.reason}), reference {want}"
                assert math.isclose(r.value, want, rel_tol=rel, abs_tol=abs_tol), (
                    f"{where}: {r.value} != reference {want}")
                compared += 1
        assert compared, f"{metric_cls.name}: the reference compared no value"
        return res

    # ---- all at once --------------------------------------------------------------------------------------
    def run_all(self, metric_cls: type[Metric], samples: list[Sample], cache_dir: Path, *, config: Any = None,
                params: dict | None = None, statuses: Iterable[Status] | None = None,
                empty_not_applicable: bool = True) -> Results:
        """Checks 1-4, the not_applicable path (unless ``empty_not_applicable`` is False: a family that scores
        an empty annotation) and the error path. ``check_unavailable`` needs a config of its own: call it."""
        self.check_metadata(metric_cls)
        res = self.check_results(metric_cls, samples, config=config, params=params, statuses=statuses)
        self.check_batch_invariance(metric_cls, samples, config=config, params=params)
        self.check_cache(metric_cls, samples, cache_dir, config=config, params=params)
        if empty_not_applicable:
            self.check_not_applicable(metric_cls, config=config, params=params)
        self.check_error(metric_cls, samples, config=config, params=params)
        return res


# ---- helpers ----------------------------------------------------------------------------------------------
def _by_metric(results: list[MetricResult]) -> dict[str, MetricResult]:
    return {r.metric: r for r in results}


def _dump(r: MetricResult) -> dict[str, Any]:
    return r.model_dump(mode="json", exclude={"cached"})


def _assert_same(a: Any, b: Any, atol: float, where: str) -> None:
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= atol, (
            f"{where}: {a!r} != {b!r}")
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a.keys() ^ b.keys())} differ"
        for k in a:
            _assert_same(a[k], b[k], atol, f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, atol, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
