"""Abstention and integrity: did the annotation answer what its type promises, and is what it holds whole?

cleanlab-style issue scores (1 = no issue; ``gate`` derives ``is_<rule>_issue`` from them):

``abstained_score``
    1 minus what is missing, clipped at 0:

    ===========================================================  =========
    what the annotation lacks                                      penalty
    ===========================================================  =========
    everything (no text in any field)                                1
    the final summary of a ``mer`` / ``image`` sample                1
    a concluded emotion (none, a placeholder such as ``[X]``, or    1
    a phrase that maps to no emotion)
    a concluding statement (the emotion only guessed from the        0.5
    emotion words the summary uses most)
    ``mer``: any audio analysis (transcript and tone both empty)     0.25
    ``mer``: any visual description (peak frame and clip)           0.25
    ``mer``: any AU analysis (no AU text, no AU intensities)        0.25
    ``image``: its visual description (image_visual_description)    0.25
    ``audio`` / ``video`` / ``au``: its one text                     1
    ===========================================================  =========

    Not answering is never scored better than answering wrong: the composite counts a 0 here as the
    worst value.

``integrity_score``
    1 minus 0.5 per flag the generator recorded (``provenance.flags``: ``truncated_llm_output`` -- an LLM
    answer cut at the token limit, ``partial_audio`` -- audio decoded only in part, ...), clipped at 0.
    Annotations with no recorded provenance (MER-Factory's) are ``not_applicable``: nothing recorded whether an
    answer was cut or the audio decoded in part, so a 1 there would be a check nobody made (a gate rule on it
    is skipped for them, with that reason, instead of passing).
"""

from __future__ import annotations

from typing import Any, Optional

from mer_eval.evidence import relate
from mer_eval.metric import Metric, MetricParams, OutputSpec
from mer_eval.domain.emotion_text import conclusion_or_abstention, sentiment_conclusion, visual_or_abstention
from mer_eval.schema import MetricResult, Sample, Status

NOT_RECORDED = ("no generation provenance recorded (MER-Factory outputs carry none): whether an LLM answer was cut "
                "or the audio decoded in part is unknown")
PROMISES = {"audio": ("transcript", "audio_description"), "video": ("video_content",),
            "au": ("visual_expression", "chronological_emotion_peaks"),
            "image": ("final_summary",)}



class AbstentionParams(MetricParams):
    pass


class Abstention(Metric):
    Params = AbstentionParams
    name = "abstention"
    order = 60
    version = "1.2"  # 1.1: integrity_score is not_applicable where no provenance was recorded (was 1)
    # 1.2: an image annotation without a visual description (image_visual_description) loses 0.25, as a mer one
    # does: the part clip_image_score abstains on
    requires = "any annotation"
    description = "What the annotation promised and did not give; flags recorded about partial inputs."
    outputs = (
        OutputSpec("abstained_score", True, (0.0, 1.0), "1 - penalties for missing promised parts"),
        OutputSpec("integrity_score", True, (0.0, 1.0), "1 - 0.5 per recorded partial/truncated-input flag",
                   primary=False),
    )

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        return {"annotation": sample.annotation.model_dump(mode="json"), "type": sample.type.value,
                "flags": sample.provenance.flags, "params": self.public_params()}

    def missing(self, s: Sample) -> list[tuple[str, float]]:
        a = s.annotation
        stype = s.type.value
        if a.is_empty() and not a.chronological_emotion_peaks and not a.top_aus_intensities:
            return [("the annotation is empty: no text in any field", 1.0)]
        out: list[tuple[str, float]] = []
        if stype in ("mer", "image"):
            if not (a.final_summary or "").strip():
                out.append((f"no final summary ({stype} annotations promise one)", 1.0))
            else:
                f, why = conclusion_or_abstention(a.final_summary or "")
                if why:
                    if sentiment_conclusion(a.final_summary or "") is None:
                        out.append((why, 1.0))
                elif f.method == "dominant_words":
                    out.append(("no concluding statement ('the core emotional state is X ...'): the emotion can only "
                                f"be guessed from the words it uses most ({f.emotion})", 0.5))
        if stype == "image":  # MER-Factory's image_visual_description: what clip_image_score checks
            _, status, why = visual_or_abstention(s)
            if status == "abstained":
                out.append((why, 0.25))
        if stype == "mer":
            if not (a.transcript or a.audio_description):
                out.append(("no audio analysis (transcript and tone both empty)", 0.25))
            if not (a.visual_objective or a.video_content or a.image_description):
                out.append(("no visual description (peak frame and clip both empty)", 0.25))
            if not (a.visual_expression or a.top_aus_intensities):
                out.append(("no AU analysis (no AU text, no AU intensities)", 0.25))
        elif stype in PROMISES and stype != "image":
            fields = PROMISES[stype]
            if not any(getattr(a, f) for f in fields):
                out.append((f"a {stype} annotation promises {' / '.join(fields)}; all empty", 1.0))
        return out

    def _one(self, s: Sample) -> list[MetricResult]:
        miss = self.missing(s)
        score = max(0.0, 1.0 - sum(p for _, p in miss))
        ev = relate(s, ["final_summary"], [], what="what the annotation answers")
        out = [self.ok(s.id, "abstained_score", round(score, 4), evidence=ev,
                       details={"missing": [{"what": w, "penalty": p} for w, p in miss],
                                "is_abstained": bool(miss), "type": s.type.value})]
        flags = dict(s.provenance.flags)
        if s.provenance.recorded_in is None and not flags:
            out += self.not_ok(s.id, Status.not_applicable, NOT_RECORDED, ["integrity_score"],
                               details={"flags": flags, "recorded": False})
            return out
        iscore = max(0.0, 1.0 - 0.5 * len(flags))
        out.append(self.ok(s.id, "integrity_score", iscore, evidence=ev,
                           details={"flags": flags, "recorded": s.provenance.recorded_in is not None}))
        return out

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        from mer_eval.domain.text import score_each_capped

        return score_each_capped(samples, self._one)
