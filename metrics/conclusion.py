"""Conclusion consistency: is the emotion the summary concludes the one its own reasoning and the sample's
evidence point to?

Without labels this is the only way to catch a flipped conclusion (the summary's emotion words swapped for
another emotion, the reasoning around them left as it was): the cues the summary reasons from -- a smile,
a raised voice, trembling, a lowered brow -- and the evidence texts it was given still point to the
original emotion.

The concluded emotion is read as everywhere (:func:`mer_eval.domain.emotion_text.concluded_emotion`). A
summary that concludes nothing, a placeholder (``[X]``) or a phrase that maps to no emotion *abstained*
(status ``abstained``: a defect, never a gap). Each source gives an emotion profile
(:func:`~mer_eval.domain.emotion_text.emotion_profile`: emotion words count 1, cue phrases by their
association weights):

========================  ================================================================  ======
source                    what is read                                                      weight
========================  ================================================================  ======
``au``                    ``top_aus_intensities`` through the single-AU association table   0.8
                          (:data:`~mer_eval.domain.emotion_text.AU_EMOTION`, EMFACS)
``peaks``                 ``chronological_emotion_peaks``: the AU rule's emotions over the   0.5
                          clip (slight 0.5, moderate 0.75, strong 1)
``audio``                 the tone description: emotion words and vocal cues                1.0
``transcript``            emotion words and speech cues; English: VADER polarity decides     0.6
                          at valence level (|compound| >= 0.3)
``visual``                visual_objective, image_description, video_content: emotion      1.0
                          words and facial/body cues
``fer``                   FER probabilities, when measured                                  0.8
``reasoning_local``       each sentence of the summary's reasoning that names the concluded 1.5
                          emotion, against the evidence it rests on: its own cues and AU
                          claims, the modality it talks about (tone, scene, face) and the
                          peaks whose timestamps it cites
``reasoning_cues``        the summary without its concluding sentence: AU claims and cue     0.5
                          phrases, not emotion words
``reasoning_words``       the summary without its concluding sentence: emotion words        0.4
========================  ================================================================  ======

A source's support for the concluded emotion X is its score of X over its best emotion's (1 = X is its
top emotion), with at most 0.25 for emotions of X's valence (:meth:`Profile.support`); a source that names
no emotion at all counts as support 0.6 for ``neutral`` and is skipped for any other conclusion (no cue is
weak evidence of calm, none of anything else). The English transcript without lexicon hits uses VADER:
support 1 when the polarity matches X's valence, 0 when it is the opposite, 0.5 for a neutral X.

Outputs: ``conclusion_support`` (weighted mean over the evidence sources), ``reasoning_support`` (over the
three reasoning sources) and ``conclusion_consistency`` (over all sources: what the composite uses). A source
whose signal a rule used to *vote* the conclusion (the offline provider's FER / AU / tone votes,
``provenance.conclusion_from``) is a self-check and is left out, listed in ``details.left_out``; so are the
reasoning sources when a template wrote the summary (it wrote the reasoning and the conclusion alike); when
only self-check sources remain the result is marked a self-check. A summary of the sentiment task
("the inferred sentiment is positive") is compared at valence level. Neutral: a source naming no emotion
supports ``neutral`` at 0.6, one with weak cues (summed weight below 1.5) in proportion.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from mer_eval.evidence import relate, self_check
from mer_eval.domain.facs import EMOTION_TO_SENTIMENT, au_code, canonical_emotion
from pydantic import Field

from mer_eval.metric import Metric, MetricParams, OutputSpec
from mer_eval.domain.emotion_text import (Profile, au_profile, conclusion_or_abstention, emotion_profile,
                                           sentiment_conclusion, strip_conclusion, summary_or_abstention,
                                           vader_compound)
from mer_eval.schema import Evidence, MetricResult, Relation, Sample, Status
from mer_eval.domain.text import cjk_ratio, unwrap_transcript

WEIGHTS = {"au": 0.8, "peaks": 0.5, "audio": 1.0, "transcript": 0.6, "visual": 1.0, "fer": 0.8,
           "reasoning_local": 1.5, "reasoning_cues": 0.5, "reasoning_words": 0.4}
EVIDENCE_SOURCES = ("au", "peaks", "audio", "transcript", "visual", "fer")
REASONING_SOURCES = ("reasoning_local", "reasoning_cues", "reasoning_words")
# the annotation fields each source reads (for the evidence rule)
SOURCE_FIELDS = {"au": ["top_aus_intensities"], "peaks": ["chronological_emotion_peaks"],
                 "audio": ["audio_description"], "transcript": ["transcript"],
                 "visual": ["visual_objective", "image_description", "video_content"],
                 "fer": ["fer_probabilities"], "reasoning_local": [], "reasoning_cues": [], "reasoning_words": []}
# words that tie a summary sentence to one modality's evidence
_MODALITY_WORDS = {
    "audio": re.compile(r"\b(?:tone|voice|vocal|pitch|audio|prosody|intonation|speaks|speaking|speech|said|says|"
                        r"sound(?:s|ed)?|utterance|words|transcript|subtitles?|dialogue|line)\b"),
    "visual": re.compile(r"\b(?:scene|visual|image|frame|setting|video|background|clip|posture|body language|"
                         r"gesture|appears|looks|looking)\b"),
    "face": re.compile(r"\b(?:facial|face|action units?|aus?|au\d+|expression|brow|lip|cheek|jaw|eyes?|mouth)\b"),
}
_TIMESTAMP = re.compile(r"\b(\d+(?:\.\d+)?)\s*(?:s\b|sec\b|secs\b|seconds?\b)")
NEUTRAL_SILENT = 0.6  # support for "neutral" from a source that names no emotion
WEAK_MASS = 1.5  # a source whose cues sum to less than this still lends "neutral" part of NEUTRAL_SILENT
_PEAK = re.compile(r"([a-z]+)\s*\((slight|moderate|strong)\)", re.I)
_STRENGTH = {"slight": 0.5, "moderate": 0.75, "strong": 1.0}


def peaks_profile(peaks: list[str]) -> Profile:
    p = Profile()
    for line in peaks:
        for m in _PEAK.finditer(line):
            emo = canonical_emotion(m.group(1))
            if emo:
                p.add(emo, m.group(0), _STRENGTH[m.group(2).lower()])
    return p


def reasoning_cue_profile(body: str) -> Profile:
    """Cues in the summary's own reasoning: AU claims (names, synonyms, codes; negation-aware) through the
    AU association table at intensity 2, and cue phrases; emotion words are not cues."""
    from mer_eval.domain.au_claims import extract_claims

    p = emotion_profile(body, words=False, cues=True)
    claims = extract_claims(body) if cjk_ratio(body) < 0.3 else None
    if claims is not None:
        p.merge(au_profile({au: 2.0 for au in sorted(claims.present)}))  # in AU order: no hash-seed order
    return p


def local_profiles(body: str, evidence: dict[str, Profile], peaks: list[str],
                   extra: Optional[dict[str, str]] = None) -> list[tuple[str, Profile, str]]:
    """For each sentence of the summary's reasoning that names an emotion: (sentence, the evidence it
    rests on, what that is). The evidence is the sentence's own cues and AU claims, plus the profile of the
    modality the sentence talks about (its tone, the scene, the face) and of the emotion peaks whose
    timestamps it cites."""
    from mer_eval.domain.au_claims import extract_claims
    from mer_eval.domain.text import split_sentences

    out = []
    peak_at: dict[str, Profile] = {}
    for line in peaks:
        m = re.match(r"\s*peak at\s+(\d+(?:\.\d+)?)s", line, re.I)
        if m:
            peak_at[f"{float(m.group(1)):.2f}"] = peaks_profile([line])
    for sent in split_sentences(body):
        low = sent.lower()
        if not emotion_profile(sent, words=True, cues=False, extra=extra).scores:
            continue
        ctx = emotion_profile(sent, words=False, cues=True)
        what = []
        if ctx.scores:
            what.append("cues")
        claims = extract_claims(sent) if cjk_ratio(sent) < 0.3 else None
        if claims is not None and claims.present:
            ctx.merge(au_profile({au: 2.0 for au in sorted(claims.present)}))
            what.append("AU claims")
        for m in _TIMESTAMP.finditer(low):
            key = f"{float(m.group(1)):.2f}"
            if key in peak_at:
                ctx.merge(peak_at[key], 2.0)
                what.append(f"peak at {key}s")
        for mod, src in (("audio", "audio"), ("visual", "visual"), ("face", "au")):
            if _MODALITY_WORDS[mod].search(low) and evidence.get(src) is not None and evidence[src].total > 0:
                prof = evidence[src]
                ctx.merge(prof, 1.0 / max(prof.total, 1e-9))  # the modality's profile, normalised to mass 1
                what.append(f"{src} evidence")
        if ctx.total > 0:
            out.append((sent, ctx, ", ".join(what)))
    return out



class ConclusionParams(MetricParams):
    emotion_map: dict[str, str] = Field(default_factory=dict)  # extra synonym -> canonical


class ConclusionConsistency(Metric):
    Params = ConclusionParams
    name = "conclusion"
    order = 30
    version = "1.0"
    requires = "annotation.final_summary and at least one evidence text, AU set or peak list"
    description = ("Whether the concluded emotion is what the summary's own reasoning and the sample's "
                   "evidence point to.")
    outputs = (
        OutputSpec("conclusion_consistency", True, (0.0, 1.0),
                   "weighted mean support for the concluded emotion over evidence and reasoning sources"),
        OutputSpec("conclusion_support", True, (0.0, 1.0),
                   "weighted mean support over the evidence sources (AUs, peaks, tone, transcript, visual, FER)",
                   primary=False),
        OutputSpec("reasoning_support", True, (0.0, 1.0),
                   "weighted mean support over the summary's own reasoning (cues, emotion words)", primary=False),
    )

    def _extra(self) -> Optional[dict[str, str]]:
        return dict(self.params["emotion_map"] or {}) or None

    def missing_inputs(self, sample: Sample) -> Optional[str]:
        text, status, why = summary_or_abstention(sample)
        if status == "not_applicable":
            return why
        return None

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        a = sample.annotation
        return {"texts": {f: getattr(a, f) for f in ("final_summary", "audio_description", "transcript",
                                                     "visual_objective", "image_description", "video_content")},
                "aus": a.top_aus_intensities, "peaks": a.chronological_emotion_peaks, "fer": a.fer_probabilities,
                "type": sample.type.value, "empty": a.is_empty(),
                "provenance": sample.provenance.model_dump(mode="json")}

    # ---- sources ----------------------------------------------------------------------------------
    def profiles(self, s: Sample, summary: str) -> dict[str, Any]:
        a = s.annotation
        extra = self._extra()
        out: dict[str, Any] = {}
        aus = {au_code(k): float(v) for k, v in a.top_aus_intensities.items() if au_code(k)}
        if aus:
            out["au"] = au_profile(aus)
        if a.chronological_emotion_peaks:
            out["peaks"] = peaks_profile(a.chronological_emotion_peaks)
        if a.audio_description:
            out["audio"] = emotion_profile(a.audio_description, extra=extra)
        tr = unwrap_transcript(a.transcript or "") if a.transcript else ""
        if tr:
            out["transcript"] = emotion_profile(tr, extra=extra)
        vis = " ".join(t for t in (a.visual_objective, a.image_description, a.video_content) if t)
        if vis:
            out["visual"] = emotion_profile(vis, extra=extra)
        if a.fer_probabilities:
            p = Profile()
            for k, v in a.fer_probabilities.items():
                emo = canonical_emotion(k)
                if emo and v == v and v > 0:
                    p.add(emo, k, float(v))
            out["fer"] = p
        body = strip_conclusion(summary)
        if body.strip():
            out["reasoning_cues"] = reasoning_cue_profile(body)
            out["reasoning_words"] = emotion_profile(body, words=True, cues=False, extra=extra)
            out["_local"] = local_profiles(body, out, a.chronological_emotion_peaks, extra)
        return out

    def _local_support(self, local: list, emo: str, extra: Optional[dict[str, str]]) -> tuple[Optional[float], list]:
        """Mean support of ``emo`` over the reasoning sentences that name it, by the evidence each rests on."""
        sups, shown = [], []
        if emo.startswith("valence:"):
            return None, []
        for sent, ctx, what in local:
            named = emotion_profile(sent, words=True, cues=False, extra=extra).scores
            if emo not in named:
                continue
            sup = ctx.support(emo)
            if sup is None:
                continue
            sups.append(sup)
            shown.append({"sentence": sent[:160], "support": sup, "from": what})
        return (round(sum(sups) / len(sups), 4) if sups else None), shown[:8]

    def _support(self, src: str, prof: Profile, emo: str, s: Sample) -> tuple[Optional[float], str]:
        if emo.startswith("valence:"):
            pol = emo.split(":", 1)[1]
            sup = prof.valence_support(pol)
            if sup is not None:
                return sup, "profile (valence)"
            if src == "transcript":
                tr = unwrap_transcript(s.annotation.transcript or "")
                c = vader_compound(tr) if cjk_ratio(tr) < 0.3 else None  # memoised: cross_modal reads it too
                if c is not None and abs(c) >= 0.3:
                    return (1.0 if ("positive" if c > 0 else "negative") == pol else 0.0), f"vader {c:+.3f}"
            return (NEUTRAL_SILENT, "no emotion cue") if pol == "neutral" and src != "reasoning_words" else \
                (None, "no emotion cue")
        sup = prof.support(emo)
        if sup is not None:
            if emo == "neutral" and src not in ("reasoning_words", "peaks"):
                # weak cues are weak evidence of calm: neutral keeps part of the silent-source support
                weak = NEUTRAL_SILENT * max(0.0, 1.0 - prof.total / WEAK_MASS)
                if weak > sup:
                    return round(weak, 4), f"weak cues (mass {prof.total:.2f} < {WEAK_MASS})"
            return sup, "profile"
        if src == "transcript":
            tr = unwrap_transcript(s.annotation.transcript or "")
            if cjk_ratio(tr) < 0.3:
                c = vader_compound(tr)
                if c is not None and abs(c) >= 0.3:
                    pol = "positive" if c > 0 else "negative"
                    val = EMOTION_TO_SENTIMENT.get(emo)
                    return (1.0 if val == pol else 0.5 if val == "neutral" else 0.0), f"vader {c:+.3f}"
        if src in ("reasoning_words",):
            return None, "no emotion word"
        if emo == "neutral" and src != "reasoning_words":
            return NEUTRAL_SILENT, "no emotion cue (weak evidence of neutral)"
        return None, "no emotion cue"

    def _relations(self, s: Sample) -> dict[str, Evidence]:
        from mer_eval.evidence import DETERMINISTIC, origin

        writer = origin(s, "final_summary")
        rel = {}
        for src, fields in SOURCE_FIELDS.items():
            if fields:
                rel[src] = relate(s, ["final_summary"], fields, conclusion=True)
            elif writer.producer in DETERMINISTIC:  # one template wrote the reasoning and the conclusion
                rel[src] = self_check(relate(s, ["final_summary"], []).compared,
                                      f"a {writer.producer} wrote both the reasoning and the conclusion")
            else:
                rel[src] = relate(s, ["final_summary"], [], what="the summary's own reasoning")
        return rel

    def _one(self, s: Sample) -> list[MetricResult]:
        summary, status, why = summary_or_abstention(s)
        names = self.output_names()
        if status == "abstained":
            return self.not_ok(s.id, Status.abstained, why, names,
                               evidence=relate(s, ["final_summary"], [], what="whether the summary answers"))
        f, abst = conclusion_or_abstention(summary or "", self._extra())
        base = {"concluded": f.emotion, "concluded_raw": f.raw, "concluded_method": f.method}
        polarity = sentiment_conclusion(summary or "") if abst else None
        if polarity:  # the sentiment task: the same sources, compared at valence level
            base.update(concluded=None, concluded_sentiment=polarity, level="valence")
            abst = None
        if abst:
            return self.not_ok(s.id, Status.abstained, abst, names, details=base,
                               evidence=relate(s, ["final_summary"], [], what="whether the summary concludes"))
        emo = f.emotion if not polarity else f"valence:{polarity}"
        profs = self.profiles(s, summary or "")
        local = profs.pop("_local", [])
        rels = self._relations(s)
        per: dict[str, dict[str, Any]] = {}
        left_out: dict[str, str] = {}
        if local:
            sup, shown = self._local_support(local, emo, self._extra())
            if sup is not None:
                per["reasoning_local"] = {"support": sup, "how": "sentences naming it, by their own evidence",
                                          "weight": WEIGHTS["reasoning_local"],
                                          "relation": rels["reasoning_local"].relation.value, "sentences": shown}
                if rels["reasoning_local"].relation == Relation.self_check:
                    left_out["reasoning_local"] = rels["reasoning_local"].reason
        for src, prof in profs.items():
            sup, how = self._support(src, prof, emo, s)
            ev = rels[src]
            entry = {"support": sup, "how": how, "weight": WEIGHTS[src], "relation": ev.relation.value,
                     **prof.as_details(8)}
            per[src] = entry
            if ev.relation == Relation.self_check:
                left_out[src] = ev.reason
        details = {**base, "sources": per, "left_out": left_out}

        def mean(srcs: tuple[str, ...]) -> tuple[Optional[float], list[str]]:
            num = den = 0.0
            used = []
            for src in srcs:
                e = per.get(src)
                if e is None or e["support"] is None or src in left_out:
                    continue
                num += WEIGHTS[src] * e["support"]
                den += WEIGHTS[src]
                used.append(src)
            return (round(num / den, 4) if den > 0 else None), used

        out: list[MetricResult] = []
        all_self = [src for src in per if src in left_out and per[src]["support"] is not None]
        for name, srcs in (("conclusion_consistency", EVIDENCE_SOURCES + REASONING_SOURCES),
                           ("conclusion_support", EVIDENCE_SOURCES), ("reasoning_support", REASONING_SOURCES)):
            value, used = mean(srcs)
            fields = [fld for src in used for fld in SOURCE_FIELDS[src]]
            if value is None:
                selfs = [src for src in all_self if src in srcs]
                if selfs:  # only sources the conclusion was voted from: report it, as a self-check
                    num = sum(WEIGHTS[x] * per[x]["support"] for x in selfs)
                    val = num / sum(WEIGHTS[x] for x in selfs)
                    ev = self_check(rels[selfs[0]].compared, "; ".join(left_out[x] for x in selfs))
                    out.append(self.ok(s.id, name, round(val, 4), details={**details, "used": selfs},
                                       evidence=ev))
                    continue
                out.extend(self.not_ok(s.id, Status.not_applicable,
                                       "no source names an emotion to compare the conclusion with", [name],
                                       details=details))
                continue
            ev = relate(s, ["final_summary"], fields, conclusion=True) if fields else \
                relate(s, ["final_summary"], [], what="the summary's conclusion against its own reasoning")
            out.append(self.ok(s.id, name, value, details={**details, "used": used}, evidence=ev))
        return out

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        return {s.id: self._one(s) for s in samples}
