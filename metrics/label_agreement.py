"""Label agreement: does the emotion the final summary concludes match the ground-truth label?

Prediction (see :mod:`mer_eval.domain.emotion_text`): the closing statement MER-Factory asks for ("the core
emotional state is X, ..."; also "X is the most likely emotion", "the inferred sentiment is X", a line
``Emotion: X``), its first known emotion word mapped with :func:`mer_eval.domain.facs.canonical_emotion` plus
``metrics.label_agreement.emotion_map``. Without such a statement, the emotion mentioned most often
(``details.method = "dominant_words"``). Task ``sentiment`` maps both sides to positive / negative / neutral
(:func:`mer_eval.domain.facs.canonical_sentiment`; an emotion conclusion counts by its valence). Task ``auto``
(the default) takes each sample's task from its annotation (:func:`mer_eval.domain.task.detect_task`: a
summary that concludes a sentiment, as MER-Factory's sentiment task writes, or a sentiment label, is scored as
sentiment; ``details.task`` / ``details.task_from`` say which and why); ``emotion`` / ``sentiment`` force one.

Decisions:

* no label: ``not_applicable``; no summary: ``abstained`` where the sample's type promises one (``mer``,
  ``image``), ``not_applicable`` where it has none to give;
* a label that maps to no canonical class: ``not_applicable`` naming it (add it to ``emotion_map``);
* a summary that concludes no emotion, a placeholder (``[X]``), or something that maps to none: ``abstained``
  ("summary concludes no emotion" / "summary concludes '<phrase>', which maps to no ..."). Not answering is
  an outcome, not a gap: the strict composite counts it as the worst value and the dataset figures count it as
  a wrong prediction (:meth:`LabelAgreement.aggregate`: ``n_abstained``), so a summary writer that never commits
  cannot look accurate by omission.
* a summary written by a prompt that contained the label (``label_aware``): a self-check
  (:func:`mer_eval.evidence.relate`), left out of composite, gates, compare and regress.

Dataset level (:meth:`LabelAgreement.aggregate`, scikit-learn): accuracy (= WAR, weighted average recall),
macro-F1 over the classes seen in labels or predictions, UAR (unweighted average recall = balanced
accuracy over the label classes), and n, over every labelled sample that was scored ok or abstained (an
abstention is predicted as ``(no prediction)``: a miss for its label's recall, no class of its own in
macro-F1); ``task`` is the run's (``mixed`` with ``tasks`` counting each when
samples differ: the figures are then reported per task under ``by_task`` too).
"""

from __future__ import annotations

from typing import Literal, Any, Optional

from mer_eval.domain.facs import canonical_emotion, canonical_sentiment
from pydantic import Field

from mer_eval.metric import Metric, MetricParams, OutputSpec
from mer_eval.schema import MetricResult, Sample, Status

NO_EMOTION = "summary concludes no emotion"
NO_PREDICTION = "(no prediction)"  # an abstention's prediction in the dataset figures: wrong for every label


def _balanced(y_true: list[str], y_pred: list[str], fn: Any) -> float:
    """Recall averaged over the label classes; predictions of classes no label has are simply wrong."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return fn(y_true, y_pred)



class LabelParams(MetricParams):
    task: Literal["auto", "emotion", "sentiment"] = "auto"
    emotion_map: dict[str, str] = Field(default_factory=dict)  # extra synonym -> canonical


class LabelAgreement(Metric):
    Params = LabelParams
    name = "label_agreement"
    order = 20
    version = "1.3"  # 1.3: abstentions count as wrong in the dataset figures; an empty promised summary abstains
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

    def task_of(self, sample: Sample) -> tuple[str, str]:
        """(task, why) for one sample: the configured one, or (auto) the one its annotation was made for."""
        if self.task != "auto":
            return self.task, "metrics.label_agreement.task"
        from mer_eval.domain.task import detect_task

        return detect_task(sample.annotation.final_summary, sample.label, self.emotion_map or None)

    def _canon_label(self, label: str, task: Optional[str] = None) -> Optional[str]:
        if (task or self.task) == "sentiment":
            return canonical_sentiment(label, self.emotion_map)
        return canonical_emotion(label, self.emotion_map)

    def missing_inputs(self, sample: Sample) -> Optional[str]:
        if not (sample.label or "").strip():
            return "sample has no ground-truth label"
        from mer_eval.domain.emotion_text import summary_or_abstention

        _, status, why = summary_or_abstention(sample)
        if status == "not_applicable":
            return why
        task = self.task_of(sample)[0]
        if self._canon_label(sample.label, task) is None:
            kind = "sentiment (positive/negative/neutral)" if task == "sentiment" else "canonical emotion"
            return (f"label {sample.label!r} maps to no {kind}; add it to "
                    "metrics.label_agreement.emotion_map")
        return None

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        return {"label": sample.label, "final_summary": sample.annotation.final_summary,
                "label_aware": sample.annotation.label_aware}

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        from mer_eval.evidence import relate
        from mer_eval.domain.emotion_text import conclusion_or_abstention, summary_or_abstention

        out: dict[str, list[MetricResult]] = {}
        for s in samples:
            task, task_from = self.task_of(s)
            label = self._canon_label(s.label or "", task)
            f, abstained = conclusion_or_abstention(s.annotation.final_summary or "", self.emotion_map or None,
                                                    sentiment=task == "sentiment")
            details = {**f.as_details(), "label_raw": s.label, "label": label, "task": task,
                       "task_from": task_from}
            ev = relate(s, ["final_summary"], ["label"], conclusion=True)
            _, status, why_empty = summary_or_abstention(s)
            if status == "abstained":  # no summary where the type promises one
                out[s.id] = self.not_ok(s.id, Status.abstained, why_empty, details=details, evidence=ev)
                continue
            if abstained and task == "emotion":
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
        pairs: dict[str, tuple[list[str], list[str]]] = {}  # task -> (labels, predictions)
        tasks: dict[str, int] = {}
        no_pred = no_label = abstained = 0
        for s in samples:
            for r in results.get(s.id, []):
                if r.metric != "label_match":
                    continue
                task = (r.details or {}).get("task")
                if task in ("emotion", "sentiment"):
                    tasks[task] = tasks.get(task, 0) + 1
                if r.status == Status.ok:
                    yt, yp = pairs.setdefault(task or self.task, ([], []))
                    yt.append(r.details["label"])
                    yp.append(r.details["predicted"])
                elif r.status == Status.abstained and r.details.get("label"):
                    # not answering counts as answering wrong: left out, it would make the figures look better
                    yt, yp = pairs.setdefault(task or self.task, ([], []))
                    yt.append(r.details["label"])
                    yp.append(NO_PREDICTION)
                    no_pred += 1
                    abstained += 1
                elif r.status == Status.not_applicable and r.details.get("label"):
                    no_pred += 1
                elif r.status == Status.not_applicable:
                    no_label += 1
        from mer_eval.domain.task import run_task

        run = run_task(tasks) if self.task == "auto" else self.task
        y_true = [y for yt, _ in pairs.values() for y in yt]
        y_pred = [y for _, yp in pairs.values() for y in yp]
        out: dict[str, Any] = {"task": run, "n": len(y_true), "n_abstained": abstained, "n_no_prediction": no_pred,
                               "n_not_applicable_other": no_label}
        if self.task == "auto":
            out["tasks"] = dict(sorted(tasks.items()))
        if not y_true:
            out["reason"] = ("no sample has both a usable label and a scored summary (a concluded emotion or an "
                             "abstention)")
            return out
        out.update(_figures(y_true, y_pred))
        if len(pairs) > 1:  # a mixed run: the figures of each task as well
            out["by_task"] = {t: {"n": len(yt), **_figures(yt, yp)} for t, (yt, yp) in sorted(pairs.items())}
        return out


def _figures(y_true: list[str], y_pred: list[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    labels = sorted((set(y_true) | set(y_pred)) - {NO_PREDICTION})  # abstentions miss; they are no class
    acc = float(accuracy_score(y_true, y_pred))
    return {"accuracy": acc, "war": acc, "uar": float(_balanced(y_true, y_pred, balanced_accuracy_score)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "classes": labels}
