"""The versioned, coverage-aware composite score (0-100).

Weights and normalisation anchors live in ``configs/composite/<version>.yaml``. A metric counts only when
its status is ``ok``; the weights of the metrics that count are renormalised and ``coverage`` records the
share of the configured weight that could be used. Below ``min_coverage`` the composite is null and
flagged, never a number made of too little evidence.

A component that failed (status ``error``: a metric crashed on this sample, an unreadable image, audio or
OpenFace CSV) is not renormalised away: the check was due and did not happen, so the composite is not
computed either (status ``error``, flag ``component_error``, the failed components and their reasons in
``missing``). A composite made of the checks that happened to survive would rank the sample as if it had
passed the one that failed. ``unavailable`` (no model in this run), ``not_applicable`` and "not computed in
this run" stay gaps that ``coverage`` accounts for: they are the same for every sample, or principled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from mer_eval.config import read_bundled_yaml
from mer_eval.evidence import counts
from mer_eval.schema import CompositeResult, MetricResult, Status

# members bound once: reading ``Status.x`` goes through the enum machinery, and the composite runs once per sample
_OK, _ABSTAINED, _ERROR = Status.ok, Status.abstained, Status.error
COMPONENT_ERROR = "component_error"  # the flag of a composite not computed because a component failed
_COUNTABLE = (_OK, _ABSTAINED)


@dataclass(frozen=True)
class CompositeMetric:
    name: str
    weight: float
    worst: float
    best: float

    def normalise(self, v: float) -> float:
        span = self.best - self.worst
        x = (v - self.worst) / span
        return min(1.0, max(0.0, x))


@dataclass
class CompositeSpec:
    """A versioned composite (``configs/composite/<version>.yaml``).

    ``aggregate: arithmetic`` (mer-v1): the weighted mean of the normalised metrics.
    ``aggregate: geometric`` (mer-v2): the weighted geometric mean, a soft minimum: one component near 0
    (a defect) pulls the composite down however good the rest is; a component at 0 counts as ``floor`` so
    the composite still orders bad samples. Metrics under ``accuracy`` do not enter the mean; each scales
    it by ``1 - weight + weight * normalised`` (a wrong label costs ``weight`` of the score, no more), so a
    grounded annotation with the wrong emotion still outranks an ungrounded boilerplate with the right one.
    """

    version: str
    min_coverage: float
    metrics: dict[str, CompositeMetric]
    substitutes: dict[str, str]
    ignore_self_au: bool = True
    aggregate: str = "arithmetic"
    floor: float = 0.0
    accuracy: dict[str, CompositeMetric] = field(default_factory=dict)
    spec_hash: Optional[str] = None

    @classmethod
    def load(cls, name_or_path: str) -> "CompositeSpec":
        import hashlib
        import json

        p = Path(name_or_path)
        if p.suffix in (".yaml", ".yml") and p.is_file():
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        else:
            try:
                data = read_bundled_yaml(f"composite/{name_or_path}.yaml")
            except FileNotFoundError:
                raise ValueError(f"composite {name_or_path!r}: no bundled configs/composite/{name_or_path}.yaml "
                                 f"and no such file") from None

        def table(entries: dict) -> dict[str, CompositeMetric]:
            out = {}
            for name, m in (entries or {}).items():
                worst, best = m["anchors"]
                if worst == best:
                    raise ValueError(f"composite {data['version']}: {name} anchors must differ")
                out[name] = CompositeMetric(name, float(m["weight"]), float(worst), float(best))
            return out

        aggregate = str(data.get("aggregate", "arithmetic"))
        if aggregate not in ("arithmetic", "geometric", "product"):
            raise ValueError(f"composite {data['version']}: aggregate must be arithmetic, geometric or product")
        accuracy = table(data.get("accuracy"))
        for name, m in accuracy.items():
            if not 0 < m.weight <= 1:
                raise ValueError(f"composite {data['version']}: accuracy weight of {name} must be in (0, 1]")
        # strict_only named what the lenient composite (retired) left out; it stays in the hash so that the
        # fingerprints of mer-v2 runs scored before and after stay equal
        canon = json.dumps({k: data.get(k) for k in ("version", "aggregate", "floor", "min_coverage", "metrics",
                                                     "accuracy", "substitutes", "ignore_self_au", "strict_only")},
                           sort_keys=True, default=str)
        return cls(
            version=str(data["version"]),
            min_coverage=float(data.get("min_coverage", 0.0)),
            metrics=table(data.get("metrics")),
            substitutes=dict(data.get("substitutes") or {}),
            ignore_self_au=bool(data.get("ignore_self_au", True)),
            aggregate=aggregate,
            floor=float(data.get("floor", 0.0)),
            accuracy=accuracy,
            spec_hash=hashlib.sha256(canon.encode()).hexdigest()[:16],
        )

    @property
    def total_weight(self) -> float:
        return sum(m.weight for m in self.metrics.values())

    def _pick(self, name: str, by_name: dict[str, MetricResult]) -> tuple[Optional[MetricResult], str]:
        r = by_name.get(name)
        src = name
        if (r is None or r.status not in _COUNTABLE) and name in self.substitutes:
            alt = by_name.get(self.substitutes[name])
            if alt is not None and alt.status == _OK:
                r, src = alt, self.substitutes[name]
        return r, src

    def _judge(self, r: Optional[MetricResult]) -> tuple[Optional[float], Optional[str], bool]:
        """(value to normalise, or None with why it does not count, abstained?)"""
        if r is None:
            return None, "not computed in this run", False
        status = r.status
        if status == _ABSTAINED:
            return float("-inf"), None, True  # the metric's worst value: never better than answering wrong
        if status != _OK:
            return None, f"{status.value}: {r.reason}", False
        ok, why = counts(r)
        if not ok:
            return None, f"not evidence: {why}", False
        return float(r.value), None, False

    def compute(self, sample_id: str, results: list[MetricResult]) -> CompositeResult:
        """The composite of one sample's results. An abstention counts as the metric's worst value: not answering
        is never scored better than answering wrong (the lenient composite, which left abstentions out and so
        scored a summary that concluded nothing above one that concluded wrongly, was retired)."""
        by_name = {r.metric: r for r in results}
        counted: dict[str, float] = {}
        used_w: dict[str, float] = {}
        missing: dict[str, str] = {}
        abstained: list[str] = []
        failed: list[str] = []  # components whose check failed (status error)

        def take(name: str, m: CompositeMetric) -> Optional[tuple[str, float]]:
            """(source metric, normalised value) or None, noting why it does not count or that it abstained."""
            r, src = self._pick(name, by_name)
            v, why, abst = self._judge(r)
            if abst:
                abstained.append(src)
            if r is not None and r.status == _ERROR:
                failed.append(name)
            if v is None:
                missing[name] = why or "not counted"
                return None
            return src, 0.0 if v == float("-inf") else self.metrics.get(src, m).normalise(v)

        for name, m in self.metrics.items():
            if m.weight <= 0:
                continue
            got = take(name, m)
            if got is not None:
                counted[got[0]] = got[1]
                used_w[got[0]] = m.weight
        factors: dict[str, float] = {}
        for name, m in self.accuracy.items():
            got = take(name, m)
            if got is not None:
                counted[got[0]] = got[1]
                factors[got[0]] = 1.0 - m.weight + m.weight * got[1]
        total = self.total_weight
        used = sum(used_w.values())
        coverage = used / total if total > 0 else 0.0
        base = dict(sample_id=sample_id, composite_version=self.version, coverage=round(coverage, 4),
                    counted=counted, missing=missing, abstained=sorted(set(abstained)))
        if failed:  # fail closed: a due check that failed is no gap to renormalise over
            return CompositeResult(value=None, weights={}, **base, flag=COMPONENT_ERROR)
        if used <= 0 or coverage < self.min_coverage:
            return CompositeResult(value=None, weights={}, **base,
                                   flag="below_min_coverage" if used > 0 else "no_metric_counted")
        weights = {k: w / used for k, w in used_w.items()}
        if self.aggregate == "geometric":
            floor = max(self.floor, 1e-6)
            g = math.exp(sum(w * math.log(max(floor, counted[k])) for k, w in weights.items()))
            value = max(0.0, (g - floor) / (1.0 - floor))  # all components at the floor -> 0, all at 1 -> 1
        elif self.aggregate == "product":
            # each component scales the score by normalised^weight (weights are exponents, not shares): a check
            # that finds a defect costs its full weight however many other checks ran
            floor = max(self.floor, 1e-6)
            p = math.exp(sum(used_w[k] * math.log(max(floor, counted[k])) for k in used_w))
            low = math.exp(sum(used_w[k] * math.log(floor) for k in used_w))
            value = max(0.0, (p - low) / (1.0 - low)) if low < 1 else p
        else:
            value = sum(weights[k] * counted[k] for k in weights)
        for f in factors.values():
            value *= f
        return CompositeResult(value=round(100.0 * value, 4), weights=weights, **base)


def composite_metric_result(c: CompositeResult) -> MetricResult:
    """The composite as a row like every other metric (status, reason): ``composite_score``."""
    name = "composite_score"
    details = {"coverage": c.coverage, "abstained": c.abstained}
    if c.value is None and c.flag == COMPONENT_ERROR:
        detail = "; ".join(f"{k}: {v}" for k, v in c.missing.items() if v.startswith("error:"))
        return MetricResult.missing(c.sample_id, name, Status.error,
                                    f"{COMPONENT_ERROR}: a check the composite needs failed; {detail}",
                                    c.composite_version, details=details)
    if c.value is None:
        why = c.flag or "no composite"
        detail = "; ".join(f"{k}: {v}" for k, v in list(c.missing.items())[:4])
        return MetricResult.missing(c.sample_id, name, Status.not_applicable,
                                    f"{why} (coverage {c.coverage:.0%}); {detail}", c.composite_version,
                                    details=details)
    return MetricResult.ok(c.sample_id, name, c.value, c.composite_version,
                           details={**details, "counted": sorted(c.counted)})


def load_spec(name: Optional[str]) -> CompositeSpec:
    return CompositeSpec.load(name or "mer-v2")
