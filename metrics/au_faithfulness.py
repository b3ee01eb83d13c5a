"""AU faithfulness: do the facial movements a *model-written* text claims agree with the AUs the annotation
itself reports?

This is not AU-F1. AU-F1 (:mod:`mer_eval.metrics.au_f1`) checks claims against an *independent* detector
(accuracy). Here the reference is the annotation's own AU report -- ``top_aus_intensities`` (above
``intensity_threshold``, MER-Factory's 0.8), and the AUs named in the rule-made ``visual_expression`` /
``au_text_description`` -- i.e. the evidence the summary's writer was given. An LLM that claims a nose
wrinkler nobody detected has hallucinated, which a curator must catch; so the result is a *faithfulness*
check and counts. The same comparison for a text a rule or template wrote from those AUs (the offline
provider's summary) cannot fail: it is marked a self-check (:func:`mer_eval.evidence.relate`).

Claims are read as AU-F1 reads them (:func:`mer_eval.domain.au_claims.extract_claims`: FACS names, everyday
synonyms, codes, negation). A claim counts as supported when the AU is reported, or when a visual description
the writer was given mentions it ("He smiles ..." in ``video_content`` supports a smile). A negated claim of a
reported AU ("no smile" with AU12 at 1.74) is a contradiction.

``au_faithfulness`` = supported / (claimed present + contradicted negations), per text in ``texts``
(default ``final_summary``, ``llm_au_description``) pooled; ``not_applicable`` when the texts claim no AU;
``abstained`` when the sample's type promises a summary and it is empty. ``details`` name the texts, the AU
source, the supported, hallucinated and contradicted AUs.
"""

from __future__ import annotations

from typing import Any, Optional

from mer_eval.evidence import relate
from mer_eval.domain.facs import au_code
from pydantic import Field

from mer_eval.metric import Metric, MetricParams, OutputSpec
from mer_eval.domain.au_claims import UNIVERSE, claims_of, extract_claims
from mer_eval.domain.emotion_text import summary_or_abstention
from mer_eval.schema import MetricResult, Relation, Sample, Status
from mer_eval.domain.text import cjk_ratio

VISUAL_FIELDS = ("visual_objective", "image_description", "video_content")
REPORT_FIELDS = ("visual_expression", "au_text_description")


def reported(sample: Sample, threshold: float) -> tuple[set[str], dict[str, Any]]:
    """AUs the annotation reports, and where each came from."""
    a = sample.annotation
    where: dict[str, Any] = {}
    out: set[str] = set()
    for k, v in a.top_aus_intensities.items():
        code = au_code(k)
        if code in UNIVERSE and v == v and float(v) > threshold:
            out.add(code)
            where.setdefault(code, []).append(f"top_aus_intensities {float(v):.2f}")
    for f in REPORT_FIELDS:
        t = getattr(a, f)
        if t:
            for code in extract_claims(t).present:
                out.add(code)
                where.setdefault(code, []).append(f)
    return out, where



class AUFaithfulnessParams(MetricParams):
    texts: list[str] = Field(default_factory=lambda: ["final_summary", "llm_au_description"])
    intensity_threshold: float = Field(0.8, ge=0, le=5)  # a reported AU counts as present above this


class AUFaithfulness(Metric):
    Params = AUFaithfulnessParams
    name = "au_faithfulness"
    order = 50
    version = "1.0"
    requires = "a model-written text (final_summary, llm_au_description) and the annotation's AU report"
    description = "AUs a model-written text claims vs the AUs the annotation reports (hallucinated movements)."
    outputs = (
        OutputSpec("au_faithfulness", True, (0.0, 1.0),
                   "supported AU claims / (AU claims + negations of reported AUs)"),
    )

    @property
    def texts(self) -> list[str]:
        return list(self.params["texts"])

    @property
    def threshold(self) -> float:
        return float(self.params["intensity_threshold"])

    def missing_inputs(self, sample: Sample) -> Optional[str]:
        rep, _ = reported(sample, self.threshold)
        _, status, why = summary_or_abstention(sample)
        if status == "not_applicable" and not sample.annotation.llm_au_description:
            return why
        if not rep and not sample.annotation.visual_expression and not sample.annotation.top_aus_intensities:
            return "the annotation reports no AUs (no top_aus_intensities, no AU text) to check claims against"
        return None

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        a = sample.annotation
        return {"texts": {f: getattr(a, f, None) for f in self.texts + list(VISUAL_FIELDS) + list(REPORT_FIELDS)},
                "top_aus": a.top_aus_intensities, "type": sample.type.value,
                "provenance": sample.provenance.model_dump(mode="json")}

    def _one(self, s: Sample) -> list[MetricResult]:
        a = s.annotation
        summary, status, why = summary_or_abstention(s)
        rep, where = reported(s, self.threshold)
        texts = {f: getattr(a, f) for f in self.texts if isinstance(getattr(a, f, None), str) and getattr(a, f).strip()}
        skipped = {f: "mostly CJK: AU claims are read from English text only" for f, t in texts.items()
                   if cjk_ratio(t) > 0.3}
        texts = {f: t for f, t in texts.items() if f not in skipped}
        if status == "abstained" and "final_summary" in self.texts and not texts:
            return self.not_ok(s.id, Status.abstained, why,
                               evidence=relate(s, ["final_summary"], [], what="whether the summary answers"))
        if not texts:
            reason = ("; ".join(f"{k}: {v}" for k, v in skipped.items()) if skipped
                      else f"none of {', '.join(self.texts)} has text")
            return self.not_ok(s.id, Status.not_applicable, reason)
        visual: set[str] = set()
        for f in VISUAL_FIELDS:
            t = getattr(a, f)
            if t:
                visual |= extract_claims(t).present
        claims, per_text = claims_of(texts)
        C = claims.present
        supported = C & (rep | visual)
        hallucinated = C - rep - visual
        contradicted = claims.absent & rep
        against = ["top_aus_intensities", *[f for f in REPORT_FIELDS if getattr(a, f)],
                   *[f for f in VISUAL_FIELDS if getattr(a, f)]]
        ev = relate(s, list(texts), against)
        details = {
            "texts": list(texts), "skipped_texts": skipped, "au_source": "annotation (top_aus_intensities, AU text)",
            "reported": sorted(rep), "reported_from": {k: v for k, v in sorted(where.items())},
            "visual_mentions": sorted(visual), "claimed": sorted(C), "claimed_by_text": per_text,
            "supported": sorted(supported), "hallucinated": sorted(hallucinated),
            "contradicted_negations": sorted(contradicted), "relation": ev.relation.value,
            "mentions": [{"au": m.au, "text": m.text, "field": m.field, "negated": m.negated}
                         for m in claims.mentions][:40],
        }
        denom = len(C) + len(contradicted)
        if denom == 0:
            return self.not_ok(s.id, Status.not_applicable,
                               f"{', '.join(texts)} claim no facial action unit", details=details, evidence=ev)
        value = len(supported) / denom
        if ev.relation == Relation.self_check:
            details["note"] = "a rule or template wrote this text from these AUs: a self-check"
        return [self.ok(s.id, "au_faithfulness", value, details=details, evidence=ev)]

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        from mer_eval.domain.text import score_each_capped

        return score_each_capped(samples, self._one)
