"""The versioned, coverage-aware composite score (0-100).

Weights and normalisation anchors live in ``configs/composite/<version>.yaml``. A metric counts only when
its status is ``ok``; the weights of the metrics that count are renormalised and ``coverage`` records the
share of the configured weight that could be used. Below ``min_coverage`` the composite is null and
flagged, never a number made of too little evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from mer_eval.config import read_bundled_yaml
from mer_eval.schema import CompositeResult, MetricResult, Status


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
    version: str
    min_coverage: float
    metrics: dict[str, CompositeMetric]
    substitutes: dict[str, str]
    ignore_self_au: bool = True

    @classmethod
    def load(cls, name_or_path: str) -> "CompositeSpec":
        p = Path(name_or_path)
        if p.suffix in (".yaml", ".yml") and p.is_file():
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        else:
            try:
                data = read_bundled_yaml(f"composite/{name_or_path}.yaml")
            except FileNotFoundError:
                raise ValueError(f"composite {name_or_path!r}: no bundled configs/composite/{name_or_path}.yaml "
                                 f"and no such file") from None
        metrics = {}
        for name, m in (data.get("metrics") or {}).items():
            worst, best = m["anchors"]
            if worst == best:
                raise ValueError(f"composite {data['version']}: {name} anchors must differ")
            metrics[name] = CompositeMetric(name, float(m["weight"]), float(worst), float(best))
        return cls(
            version=str(data["version"]),
            min_coverage=float(data.get("min_coverage", 0.0)),
            metrics=metrics,
            substitutes=dict(data.get("substitutes") or {}),
            ignore_self_au=bool(data.get("ignore_self_au", True)),
        )

    @property
    def total_weight(self) -> float:
        return sum(m.weight for m in self.metrics.values())

    def compute(self, sample_id: str, results: list[MetricResult]) -> CompositeResult:
        by_name = {r.metric: r for r in results}
        counted: dict[str, float] = {}
        used_w: dict[str, float] = {}
        missing: dict[str, str] = {}
        for name, m in self.metrics.items():
            if m.weight <= 0:
                continue
            r = by_name.get(name)
            src = name
            if (r is None or r.status != Status.ok) and name in self.substitutes:
                alt = by_name.get(self.substitutes[name])
                if alt is not None and alt.status == Status.ok:
                    r, src = alt, self.substitutes[name]
            if r is None:
                missing[name] = "not computed in this run"
                continue
            if r.status != Status.ok:
                missing[name] = f"{r.status.value}: {r.reason}"
                continue
            if self.ignore_self_au and name.startswith("au_") and r.details.get("au_source") == "self":
                missing[name] = "au_source is self (AUs the text was generated from), not independent evidence"
                continue
            if r.details.get("independent") is False:
                missing[name] = f"not independent evidence: {r.details.get('dependence', 'see details')}"
                continue
            norm_spec = self.metrics.get(src, m)
            counted[src] = norm_spec.normalise(float(r.value))
            used_w[src] = m.weight
        total = self.total_weight
        used = sum(used_w.values())
        coverage = used / total if total > 0 else 0.0
        if used <= 0 or coverage < self.min_coverage:
            return CompositeResult(
                sample_id=sample_id, composite_version=self.version, value=None, coverage=round(coverage, 4),
                counted=counted, weights={}, missing=missing,
                flag="below_min_coverage" if used > 0 else "no_metric_counted",
            )
        weights = {k: w / used for k, w in used_w.items()}
        value = 100.0 * sum(weights[k] * counted[k] for k in counted)
        return CompositeResult(
            sample_id=sample_id, composite_version=self.version, value=round(value, 4),
            coverage=round(coverage, 4), counted=counted, weights=weights, missing=missing,
        )


def composite_metric_result(c: CompositeResult) -> MetricResult:
    """The composite as a row like every other metric (status, reason)."""
    if c.value is None:
        why = c.flag or "no composite"
        detail = "; ".join(f"{k}: {v}" for k, v in list(c.missing.items())[:4])
        return MetricResult.missing(c.sample_id, "composite_score", Status.not_applicable,
                                    f"{why} (coverage {c.coverage:.0%}); {detail}", c.composite_version,
                                    details={"coverage": c.coverage})
    return MetricResult.ok(c.sample_id, "composite_score", c.value, c.composite_version,
                           details={"coverage": c.coverage, "counted": sorted(c.counted)})


def load_spec(name: Optional[str]) -> CompositeSpec:
    return CompositeSpec.load(name or "mer-v1")
