"""The evidence rule: which comparisons count, in one place.

A metric compares an annotation text with something else: a label, an independent detector, the audio, or
the evidence texts the annotation was written from. Whether that comparison *proves* anything depends on
who produced each side:

* ``self_check``: a text written by a deterministic rule or template is compared with the very numbers it
  was made from (MER-Factory's AU text against its own OpenFace CSV; the offline provider's conclusion,
  voted from the FER class, against that FER class; a summary written with the label in its prompt against
  the label). It cannot fail, so it proves nothing: composite, gate, compare, regress, report and run.json
  leave it out and say so.
* ``faithfulness``: a model-written text compared with the evidence it was given (an LLM summary's AU
  claims against the AUs it was shown). A model can hallucinate; this is exactly what a curator must catch,
  so it counts.
* ``independent``: compared with a measurement the producer did not use (a label, an independent AU
  detector, ASR on the audio, CLIP on the frame). It counts.
* ``intrinsic``: a property of the text alone (repetition, diversity, abstention). It counts.

Who wrote each field comes from :attr:`Sample.provenance` (``mer_eval_meta.json`` of our own runs) or, for
MER-Factory's outputs, from its known layout (:data:`MER_FACTORY_ORIGINS`). Every consumer asks
:func:`counts`, which also reads result files written before :class:`~mer_eval.schema.Evidence` existed.
"""

from __future__ import annotations

import functools
from typing import Iterable, Optional

from mer_eval.schema import Evidence, InputRef, MetricResult, Relation, Sample, SampleProvenance, TextOrigin

# The fields an LLM summary is written from in MER-Factory's pipeline (its final prompt shows all of them).
SUMMARY_INPUTS = ["chronological_emotion_peaks", "visual_expression", "visual_objective", "audio_description",
                  "transcript", "video_content", "image_description", "llm_au_description",
                  "au_text_description", "top_aus_intensities"]

# MER-Factory's layout, as its source writes it (see MER-FACTORY-FORMATS.md): rule-made AU texts and peaks,
# model-written descriptions and summary.
MER_FACTORY_ORIGINS: dict[str, TextOrigin] = {
    "top_aus_intensities": TextOrigin(producer="detector", made_from=["openface_csv"], stage="au"),
    "chronological_emotion_peaks": TextOrigin(producer="rule", made_from=["openface_csv"], stage="peaks"),
    "visual_expression": TextOrigin(producer="rule", made_from=["top_aus_intensities"], stage="au_text"),
    "au_text_description": TextOrigin(producer="rule", made_from=["top_aus_intensities"], stage="au_text"),
    "visual_objective": TextOrigin(producer="llm", made_from=["peak_frame_image"], stage="visual"),
    "image_description": TextOrigin(producer="llm", made_from=["image"], stage="visual"),
    "video_content": TextOrigin(producer="llm", made_from=["video"], stage="visual"),
    "transcript": TextOrigin(producer="llm", made_from=["audio"], stage="audio"),
    "audio_description": TextOrigin(producer="llm", made_from=["audio"], stage="audio"),
    "llm_au_description": TextOrigin(producer="llm", made_from=["au_text_description"], stage="au_text"),
    "final_summary": TextOrigin(producer="llm", made_from=list(SUMMARY_INPUTS), stage="synthesis"),
}
DETERMINISTIC = {"rule", "template"}
MEASURED = {"detector", "asr", "media", "human"}


_BY_PROVIDER: dict[tuple, tuple[TextOrigin, TextOrigin]] = {}  # the summary's origin per (provider, model)
_REFS: dict[tuple, InputRef] = {}  # InputRef per (name, producer, stage, provider, model): built once


def origin(sample: Optional[Sample], name: str) -> TextOrigin:
    """Who produced ``name`` for this sample: recorded provenance first, else MER-Factory's layout."""
    if sample is not None and name in sample.provenance.origins:
        return sample.provenance.origins[name]
    if name in MER_FACTORY_ORIGINS:
        o = MER_FACTORY_ORIGINS[name]
        if sample is not None and name == "final_summary" and sample.annotation.provider:
            key = (sample.annotation.provider, sample.annotation.model)
            hit = _BY_PROVIDER.get(key)
            if hit is None or hit[0] is not o:  # (the layout's entry it was copied from, the copy)
                hit = (o, o.model_copy(update={"provider": key[0], "model": key[1]}))
                if len(_BY_PROVIDER) < 1024:
                    _BY_PROVIDER[key] = hit
            return hit[1]
        return o
    if name in ("label", "reference_transcript"):
        return TextOrigin(producer="human")
    if name in ("audio", "video", "image", "peak_frame_image"):
        return TextOrigin(producer="media")
    if name == "openface_csv":
        return TextOrigin(producer="detector", made_from=["video"])
    if name == "fer_probabilities":
        return TextOrigin(producer="detector", made_from=["peak_frame_image"])
    return TextOrigin(producer="unknown")


@functools.lru_cache(maxsize=1024)
def _layout_sources(name: str, n_layout: int) -> frozenset[str]:
    """:func:`_sources` of a sample without recorded origins: MER-Factory's layout alone decides (a provider
    only names who wrote the summary, not what from). ``n_layout``: the layout's size, so an addition is seen."""
    return frozenset(_sources(None, name, set()))


def _sources(sample: Optional[Sample], name: str, seen: Optional[set] = None) -> set[str]:
    """Every input ``name`` was (transitively) made from, ``name`` included."""
    if seen is None and (sample is None or not sample.provenance.origins):
        return set(_layout_sources(name, len(MER_FACTORY_ORIGINS)))
    seen = set() if seen is None else seen
    if name in seen:
        return seen
    seen.add(name)
    for x in origin(sample, name).made_from:
        _sources(sample, x, seen)
    return seen


def _ref(sample: Optional[Sample], name: str) -> InputRef:
    o = origin(sample, name)
    key = (name, o.producer, o.stage, o.provider, o.model)
    ref = _REFS.get(key)
    if ref is None:
        ref = InputRef(name=name, producer=o.producer, stage=o.stage, provider=o.provider, model=o.model)
        if len(_REFS) < 4096:
            _REFS[key] = ref
    return ref


def relate(sample: Optional[Sample], texts: Iterable[str], against: Iterable[str] = (), *,
           conclusion: bool = False, what: str = "") -> Evidence:
    """The typed evidence of comparing annotation fields ``texts`` with ``against``.

    ``conclusion=True`` when the text's *concluded emotion* is what is compared: a conclusion a rule voted
    from some signal (``provenance.conclusion_from``) is a self-check against that signal.
    """
    texts, against = list(texts), list(against)
    compared = [_ref(sample, t) for t in texts] + [_ref(sample, a) for a in against]
    if not against:
        return Evidence(relation=Relation.intrinsic, independent=True, compared=compared,
                        reason=f"{what or 'a property of ' + ', '.join(texts)}: the text alone")
    label_aware = bool(sample is not None and sample.annotation.label_aware)
    for t in texts:
        o = origin(sample, t)
        made = _sources(sample, t) - {t}
        if "label" in against and label_aware and t == "final_summary":
            return Evidence(relation=Relation.self_check, independent=False, compared=compared,
                            reason="the label was in the prompt that wrote the summary")
        voted = sample.provenance.conclusion_from if sample is not None else None
        if conclusion and voted is not None:
            # what decided the conclusion is recorded: only those signals make a self-check of it
            hit = sorted(set(voted) & set(against))
            if hit:
                return Evidence(relation=Relation.self_check, independent=False, compared=compared,
                                reason=f"the concluded emotion was voted by a rule from {', '.join(hit)}, "
                                       f"the signal it is checked against")
            continue
        if o.producer in DETERMINISTIC:
            hit = sorted(made & set(against))
            if hit:
                return Evidence(relation=Relation.self_check, independent=False, compared=compared,
                                reason=f"{t} was written by a {o.producer} from {', '.join(hit)}, the very input "
                                       f"it is checked against")
    seen: set[str] = set()
    for t in texts:
        seen |= _sources(sample, t)
    given = sorted(seen & set(against))
    if given:
        return Evidence(relation=Relation.faithfulness, independent=True, compared=compared,
                        reason=f"{', '.join(texts)} checked against {', '.join(given)}, which its producer was given")
    return Evidence(relation=Relation.independent, independent=True, compared=compared,
                    reason=f"{', '.join(against)} was not used to write {', '.join(texts)}")


def self_check(compared: Iterable[InputRef], reason: str) -> Evidence:
    return Evidence(relation=Relation.self_check, independent=False, compared=list(compared), reason=reason)


def relation(r: MetricResult) -> Relation:
    """The relation of a result; results without typed evidence (older files) by their legacy markers."""
    if r.evidence is not None:
        return r.evidence.relation
    if r.details.get("au_source") == "self" or r.details.get("independent") is False:
        return Relation.self_check
    return Relation.independent


def counts(r: MetricResult) -> tuple[bool, Optional[str]]:
    """The one rule every consumer asks: (does this value count as evidence, why not)."""
    if r.evidence is not None:
        if r.evidence.independent:
            return True, None
        return False, f"self-check: {r.evidence.reason}"
    # files written before schema 1.1 carried the same decision as loose markers in details
    if r.details.get("au_source") == "self":
        return False, "self-check: au_source is self (AUs the text was generated from)"
    if r.details.get("independent") is False:
        return False, f"self-check: {r.details.get('dependence') or 'marked not independent'}"
    return True, None


def dependence(r: MetricResult) -> Optional[str]:
    """Why a value does not count, or None when it does (the ``dependence`` column of scores.parquet)."""
    ok, why = counts(r)
    return None if ok else why


# ---- provenance recorded by mer-eval's own generate ------------------------------------------------

# what the offline provider's templates vote the conclusion from (generators/synthesis.py, VOTE_ORDER)
OFFLINE_CONCLUSION_FROM = ["fer_probabilities", "top_aus_intensities", "chronological_emotion_peaks",
                           "audio_description"]


def provenance_from_meta(meta: dict) -> SampleProvenance:
    """:class:`SampleProvenance` from ``mer_eval_meta.json``: its ``text_origins`` / ``conclusion_from`` /
    ``flags`` when recorded; for metas written before those keys, inferred from the provider (the offline
    provider's texts are templates over the measured signals and its conclusion a vote of FER, AU rules and
    the voice; any other provider's summary was written by a model that was shown the same signals)."""
    pv = SampleProvenance(recorded_in="mer_eval_meta.json")
    provider = meta.get("provider") if isinstance(meta.get("provider"), str) else None
    model = meta.get("model") if isinstance(meta.get("model"), str) else None
    origins = meta.get("text_origins")
    if isinstance(origins, dict):
        for k, v in origins.items():
            if isinstance(v, dict) and isinstance(v.get("producer"), str):
                try:
                    pv.origins[str(k)] = TextOrigin.model_validate(
                        {x: v.get(x) for x in ("producer", "made_from", "stage", "provider", "model") if x in v})
                except ValueError:
                    continue
    elif provider:
        made = SUMMARY_INPUTS + ["fer_probabilities"]
        if provider == "offline":
            pv.origins["final_summary"] = TextOrigin(producer="template", made_from=made, stage="synthesis",
                                                     provider=provider, model=model)
            pv.origins["audio_description"] = TextOrigin(producer="template", made_from=["audio"], stage="audio",
                                                         provider=provider, model=model)
            pv.origins["llm_au_description"] = TextOrigin(producer="template", made_from=["top_aus_intensities"],
                                                          stage="au_text", provider=provider, model=model)
        else:
            pv.origins["final_summary"] = TextOrigin(producer="llm", made_from=made, stage="synthesis",
                                                     provider=provider, model=model)
        pv.origins["transcript"] = TextOrigin(producer="asr", made_from=["audio"], stage="audio")
    cf = meta.get("conclusion_from")
    if isinstance(cf, list):
        pv.conclusion_from = [str(x) for x in cf]
    elif "conclusion_from" not in meta and provider == "offline":
        pv.conclusion_from = list(OFFLINE_CONCLUSION_FROM)
    flags = meta.get("flags")
    if isinstance(flags, dict):
        pv.flags = {str(k): str(v) for k, v in flags.items()}
    return pv


def by_model(sample: Optional[Sample], texts: Iterable[str], media: str, model: Optional[str]) -> Evidence:
    """A text compared with the media itself by a model of its own (CLIP, CLAP): independent of how the text
    was written, even when a rule wrote it from measurements of that media, since the model does not read
    those measurements."""
    texts = list(texts)
    return Evidence(relation=Relation.independent, independent=True,
                    compared=[_ref(sample, t) for t in texts] + [InputRef(name=media, producer="media", model=model)],
                    reason=f"{model or 'a model'} compares {', '.join(texts) or 'the text'} with the {media} itself")
