"""LabelAgreement on real MER-Factory summaries, the sentiment task, and dataset figures vs scikit-learn."""

from __future__ import annotations

import pytest

from mer_eval.metrics.label_agreement import NO_PREDICTION, NO_EMOTION, LabelAgreement
from mer_eval.schema import Annotation, Sample, Status


def _real(shared_data):
    from mer_eval.discovery import discover

    return discover(shared_data / "annotations-mer-factory").by_id()


def _one(metric, sample):
    (r,) = metric.score([sample])[sample.id]
    return r


def test_real_summaries_emotion_task(shared_data):
    ds = _real(shared_data)
    m = LabelAgreement({"task": "emotion"})
    # default_merr_data_MER: "In conclusion, the core emotional state is surprise, ..."
    r = _one(m, ds["default_merr_data_MER"].model_copy(update={"label": "surprise"}))
    assert r.status == Status.ok and r.value == 1.0
    assert r.details["predicted"] == "surprise" and r.details["method"] == "conclusion"
    r = _one(m, ds["default_merr_data_MER"].model_copy(update={"label": "hap"}))  # MER2023 spelling
    assert r.value == 0.0 and r.details["label"] == "happy"
    # gemini_merr: "the core emotional state is frustration" -> anger family
    r = _one(m, ds["gemini_merr"].model_copy(update={"label": "Anger"}))
    assert r.value == 1.0 and r.details["predicted_raw"] == "frustration" and r.details["predicted"] == "angry"
    # llava: "the core emotional state is likely one of mild irritation or annoyance"
    r = _one(m, ds["llava-llama3_llama3.2"].model_copy(update={"label": "angry"}))
    assert r.value == 1.0 and r.details["predicted_raw"] == "irritation"
    # bakllava (older schema) states no conclusion: dominant emotion words ("sadness" x4, ...)
    r = _one(m, ds["bakllava_llama3.2_merr"].model_copy(update={"label": "sad"}))
    assert r.value == 1.0 and r.details["method"] == "dominant_words" and r.details["counts"]["sad"] == 4
    # the sentiment summary concludes "Positive": no emotion under the emotion task
    r = _one(m, ds["default_merr_data_sentiment"].model_copy(update={"label": "happy"}))
    assert r.status == Status.not_applicable and r.value is None
    assert "'positive'" in r.reason and "sentiment" in r.reason


def test_real_summaries_sentiment_task(shared_data):
    ds = _real(shared_data)
    m = LabelAgreement({"task": "sentiment"})
    r = _one(m, ds["default_merr_data_sentiment"].model_copy(update={"label": "positive"}))
    assert r.value == 1.0 and r.details["predicted"] == "positive"
    r = _one(m, ds["default_merr_data_sentiment"].model_copy(update={"label": "neg"}))
    assert r.value == 0.0 and r.details["label"] == "negative"
    # an emotion conclusion counts by its valence: frustration -> negative
    r = _one(m, ds["gemini_merr"].model_copy(update={"label": "negative"}))
    assert r.value == 1.0 and r.details["predicted"] == "negative"


def test_not_applicable_paths(shared_data):
    ds = _real(shared_data)
    m = LabelAgreement({})
    r = _one(m, ds["gemini_merr"])  # no label in the file
    assert r.status == Status.not_applicable and "no ground-truth label" in r.reason
    r = _one(m, Sample(id="nosum", label="happy"))  # a mer sample promises a summary: not answering
    assert r.status == Status.abstained and r.value is None and "no summary" in r.reason
    r = _one(m, Sample(id="aud", type="audio", label="happy", annotation=Annotation(transcript="hi")))
    assert r.status == Status.not_applicable and "audio annotations carry no final summary" in r.reason
    r = _one(m, Sample(id="x", label="happy", annotation=Annotation(final_summary="The man stands in a room.")))
    # not answering is an outcome (abstained), never a gap (not_applicable)
    assert r.status == Status.abstained and r.reason == NO_EMOTION and r.value is None
    r = _one(m, ds["gemini_merr"].model_copy(update={"label": "schadenfreude"}))
    assert r.status == Status.not_applicable and "emotion_map" in r.reason
    # ... which the config's emotion_map fixes (the phrase also maps through it)
    m2 = LabelAgreement({"emotion_map": {"schadenfreude": "neutral"}})
    r = _one(m2, ds["gemini_merr"].model_copy(update={"label": "schadenfreude"}))
    assert r.status == Status.ok and r.value == 0.0 and r.details["label"] == "neutral"


def test_negation_and_variants():
    m = LabelAgreement({})
    s = Sample(id="v", label="sad", annotation=Annotation(
        final_summary="He is not angry at all. Sadness is the most likely emotion here."))
    r = _one(m, s)
    assert r.value == 1.0 and r.details["predicted"] == "sad"
    s = Sample(id="w", label="fear", annotation=Annotation(final_summary="Analysis...\nEmotion: Fearful\n"))
    assert _one(m, s).value == 1.0


def test_aggregate_equals_sklearn():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    # hand example: labels vs concluded emotions
    pairs = [("happy", "happy"), ("happy", "sad"), ("sad", "sad"), ("angry", "angry"), ("angry", "sad"),
             ("angry", "angry"), ("neutral", "surprise")]
    samples = [
        Sample(id=f"s{i}", label=lab, annotation=Annotation(
            final_summary=f"In conclusion, the core emotional state is {pred}, and the most likely cause is x."))
        for i, (lab, pred) in enumerate(pairs)
    ]
    samples.append(Sample(id="nolab", annotation=Annotation(final_summary="the core emotional state is joy")))
    samples.append(Sample(id="nopred", label="sad", annotation=Annotation(final_summary="A room.")))
    m = LabelAgreement({})
    res = m.score(samples)
    agg = m.aggregate(samples, res)
    # "nopred" concludes nothing (abstained): a wrong prediction, never left out of the figures
    yt = [a for a, _ in pairs] + ["sad"]
    yp = [b for _, b in pairs] + [NO_PREDICTION]
    assert agg["n"] == 8 and agg["n_no_prediction"] == 1 and agg["n_abstained"] == 1
    assert agg["accuracy"] == pytest.approx(accuracy_score(yt, yp)) == pytest.approx(4 / 8)
    assert agg["war"] == agg["accuracy"]
    # UAR by hand: happy 1/2, sad 1/2 (the abstention missed it), angry 2/3, neutral 0/1 -> mean
    assert agg["uar"] == pytest.approx(balanced_accuracy_score(yt, yp)) == pytest.approx((0.5 + 0.5 + 2 / 3 + 0) / 4)
    # macro-F1 over the real classes: the abstention lowers sad's recall, it is no class of its own
    classes = sorted(set(yt + yp) - {NO_PREDICTION})
    assert agg["classes"] == classes
    assert agg["macro_f1"] == pytest.approx(f1_score(yt, yp, labels=classes, average="macro", zero_division=0))
    # answering nothing cannot look accurate: the abstention alone is accuracy 0, not "no figures"
    only = m.aggregate(samples[-2:], {k: v for k, v in res.items() if k in ("nolab", "nopred")})
    assert only["n"] == 1 and only["accuracy"] == 0.0 and only["uar"] == 0.0


def test_chinese_summary():
    m = LabelAgreement({})
    s = Sample(id="zh", label="angry", annotation=Annotation(
        final_summary="他的语气很不耐烦，但他并不高兴。综上所述，核心情绪是愤怒，最可能的原因是被问到不懂的问题。"))
    r = _one(m, s)
    assert r.value == 1.0 and r.details["predicted_raw"] == "愤怒" and r.details["method"] == "conclusion"
    s2 = Sample(id="zh2", label="happy", annotation=Annotation(final_summary="他并不高兴，看起来很生气，非常生气。"))
    r = _one(m, s2)  # 不高兴 is negated; 生气 twice -> angry
    assert r.value == 0.0 and r.details["predicted"] == "angry" and r.details["method"] == "dominant_words"
    r = _one(LabelAgreement({"task": "sentiment"}),
             Sample(id="zh3", label="negative", annotation=Annotation(final_summary="综合来看，情感倾向为消极。")))
    assert r.value == 1.0


def test_label_aware_generation_is_marked_dependent():
    from mer_eval.metrics.label_agreement import LabelAgreement
    from mer_eval.schema import Annotation, Sample

    summary = "Everything points one way: the core emotional state is happy, and the most likely cause is a joke."
    blind = Sample(id="a", label="happy", annotation=Annotation(final_summary=summary, label_aware=False))
    aware = Sample(id="b", label="happy", annotation=Annotation(final_summary=summary, label_aware=True))
    res = LabelAgreement({"task": "emotion"}).score([blind, aware])
    from mer_eval.evidence import counts

    assert res["a"][0].value == 1.0 and counts(res["a"][0]) == (True, None)
    assert res["a"][0].evidence.relation.value == "independent"
    assert res["b"][0].value == 1.0 and res["b"][0].evidence.independent is False
    ok, why = counts(res["b"][0])
    assert ok is False and "label was in the prompt" in why
