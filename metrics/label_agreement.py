"""Label agreement: does the emotion the final summary concludes match the ground-truth label?

Prediction (see :mod:`mer_eval.domain.emotion_text`): the closing statement MER-Factory asks for ("the core
emotional state is X, ..."; also "X is the most likely emotion", "the inferred sentiment is X", a line
``Emotion: X``), its first known emotion word mapped with :func:`mer_eval.domain.facs.canonical_emotion` plus
``metrics.label_agreement.emotion_map``. Without such a statement, the emotion mentioned most often
(``details.method = "dominant_words"``). Task ``sentiment`` maps both sides to positive / negative / neutral
(:func:`mer_eval.domain.facs.canonical_sentiment`; an emotion conclusion counts by its valence).

Decisions:

* no label, or no summary: ``not_applicable``;
* a label that maps to no canonical class: ``not_applicable`` naming it (add it to ``emotion_map``);
* a summary that concludes no emotion, a placeholder (``[X]``), or something that maps to none: ``abstained``
  ("summary concludes no emotion" / "summary concludes '<phrase>', which maps to no ..."). Not answering is
  an outcome, not a gap: the strict composite counts it as the worst value, the dataset figures leave it
  out and :meth:`LabelAgreement.aggregate` reports how many there were (``n_no_prediction``), so a summary
  writer that never commits cannot look accurate by omission.
* a summary written by a prompt that contained the label (``label_aware``): a self-check
  (:func:`mer_eval.evidence.relate`), left out of composite, gates, compare and regress.

Dataset level (:meth:`LabelAgreement.aggregate`, scikit-learn): accuracy (= WAR, weighted average recall),
macro-F1 over the classes seen in labels or predictions, UAR (unweighted average recall = balanced
accuracy over the label classes), and n.
"""

from __future__ import annotations

from typing import Literal, Any, Optional

from mer_eval.domain.facs import canonical_emotion, canonical_sentiment
from pydantic import Field

from mer_eval.metric import Metric, MetricParams, OutputSpec
from mer_eval.schema import MetricResult, Sample, Status

NO_EMOTION = "summary concludes no emotion"


def _balanced(y_true: list[str], y_pred: list[str], fn: Any) -> float:
    """Recall averaged over the label classes; predictions of classes no label has are simply wrong."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return fn(y_true, y_pred)



class LabelParams(MetricParams):
    task: Literal["emotion", "sentiment"] = "emotion"
    emotion_map: dict[str, str] = Field(default_factory=dict)  # extra synonym -> canonical


class LabelAgreement(Metric):
    Params = LabelParams
    name = "label_agreement"
    order = 20
    version = "1.1"
    requires = "sample.label and annotation.final_summary"
    description = "Whether the emotion (or sentiment) the final summary concludes equals the ground-truth label."
    outputs = (
        OutputSpec("label_match", True, (0.0, 1.0),
                   "1 if the summary's concluded emotion (canonical) equals the label (canonical), else 0"),
    )

    @property
    def task(self) -> str:
        return str(self.params["task"])

    @property
    def emotion_map(self) -> dict[str, str]:
        return dict(self.params["emotion_map"] or {})

    def _canon_label(self, label: str) -> Optional[str]:
        if self.task == "sentiment":
            return canonical_sentiment(label, self.emotion_map)
        return canonical_emotion(label, self.emotion_map)

    def missing_inputs(self, sample: Sample) -> Optional[str]:
        if not (sample.label or "").strip():
            return "sample has no ground-truth label"
        if not (sample.annotation.final_summary or "").strip():
            return "annotation has no final summary"
        if self._canon_label(sample.label) is None:
            kind = "sentiment (positive/negative/neutral)" if self.task == "sentiment" else "canonical emotion"
            return (f"label {sample.label!r} maps to no {kind}; add it to "
                    "metrics.label_agreement.emotion_map")
        return None

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        return {"label": sample.label, "final_summary": sample.annotation.final_summary,
                "label_aware": sample.annotation.label_aware}

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        from mer_eval.evidence import relate
        from mer_eval.domain.emotion_text import conclusion_or_abstention

        out: dict[str, list[MetricResult]] = {}
        for s in samples:
            label = self._canon_label(s.label or "")
            f, abstained = conclusion_or_abstention(s.annotation.final_summary or "", self.emotion_map or None,
                                                    sentiment=self.task == "sentiment")
            details = {**f.as_details(), "label_raw": s.label, "label": label, "task": self.task}
            ev = relate(s, ["final_summary"], ["label"], conclusion=True)
            if abstained and self.task == "emotion":
                from mer_eval.domain.emotion_text import sentiment_conclusion

                sent = sentiment_conclusion(s.annotation.final_summary or "")
                if sent:
                    out[s.id] = self.not_ok(s.id, Status.not_applicable,
                                            f"summary concludes a sentiment ({sent!r}), not an emotion; score it with "
                                            "--set metrics.label_agreement.task=sentiment", details=details)
                    continue
            if abstained:
                # not answering is an outcome, never a gap: the strict composite counts it as a mismatch
                out[s.id] = self.not_ok(s.id, Status.abstained, abstained, details=details, evidence=ev)
                continue
            out[s.id] = [self.ok(s.id, "label_match", 1.0 if f.emotion == label else 0.0, details=details,
                                 evidence=ev)]
        return out

    def aggregate(self, samples: list[Sample], results: dict[str, list[MetricResult]]) -> dict[str, Any]:
        from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

        y_true: list[str] = []
        y_pred: list[str] = []
        no_pred = no_label = 0
        for s in samples:
            for r in results.get(s.id, []):
                if r.metric != "label_match":
                    continue
                if r.status == Status.ok:
                    y_true.append(r.details["label"])
                    y_pred.append(r.details["predicted"])
                elif r.status in (Status.abstained, Status.not_applicable) and r.details.get("label"):
                    no_pred += 1
                elif r.status == Status.not_applicable:
                    no_label += 1
        out: dict[str, Any] = {"task": self.task, "n": len(y_true), "n_no_prediction": no_pred,
                               "n_not_applicable_other": no_label}
        if not y_true:
            out["reason"] = "no sample has both a usable label and a concluded emotion"
            return out
        labels = sorted(set(y_true) | set(y_pred))
        acc = float(accuracy_score(y_true, y_pred))
        out.update({
            "accuracy": acc,
            "war": acc,
            "uar": float(_balanced(y_true, y_pred, balanced_accuracy_score)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "classes": labels,
        })
        return out
