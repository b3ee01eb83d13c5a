"""Audio stage on real speech: Whisper transcript vs the reference, prosody in plausible ranges, pauses."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from mer_eval.generators.stages import StageError
from mer_eval.generators.stages.audio import describe, prosody, run_audio, timing, yin
from mer_eval.generators.stages.media import run_media

from mer_eval.config import load_config
from mer_eval.domain.media import load_audio
from mer_eval.models import resolve
from mer_eval.schema import Sample


def _norm(t: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z' ]+", " ", t.lower().replace("-", " "))).strip()


def _wer(ref: str, hyp: str) -> float:
    import jiwer

    return jiwer.wer(_norm(ref), _norm(hyp))


def _need_whisper():
    if not resolve("whisper-base").available:
        pytest.skip("whisper-base weights are not installed")


def test_yin_on_synthetic_tones():
    t = np.arange(16000) / 16000
    for f in (90.0, 150.0, 240.0):
        x = 0.3 * np.sign(np.sin(2 * np.pi * f * t)) + 0.2 * np.sin(2 * np.pi * 2 * f * t)  # harmonic-rich
        f0, _ = yin(x)
        assert abs(np.nanmedian(f0) - f) < 1.0
    f0, _ = yin(np.zeros(16000))
    assert np.isnan(f0).all()


def test_timing_and_description_state_numbers():
    words = [{"word": "a", "start": 0.0, "end": 0.4}, {"word": "b", "start": 1.0, "end": 1.3},
             {"word": "c", "start": 1.35, "end": 2.0}]
    t = timing(words)
    assert t["words"] == 3 and t["speech_rate_wps"] == 1.5 and t["word_gap_count"] == 1
    m = {**t, "pitch_median_hz": 180.0, "pitch_p5_hz": 95.0, "pitch_p95_hz": 310.0, "pitch_range_semitones": 20.5,
         "loudness_mean_dbfs": -15.0, "loudness_range_db": 20.0, "pause_count": 2, "pause_total_s": 1.1}
    d = describe(m)
    assert d == ("Speech is slow (1.5 words/s) with a wide pitch range (95–310 Hz, median 180 Hz) and loud delivery "
                 "(mean -15 dBFS, range 20 dB). 2 pauses longer than 0.3 s totalling 1.1 s.")


def test_jfk_transcript_prosody_pauses(shared_data, tmp_path):
    _need_whisper()
    s = Sample(id="jfk", type="audio", audio=shared_data / "speech-jfk" / "jfk.flac")
    cfg = load_config()
    run_media(s, tmp_path, cfg)
    r = run_audio(s, tmp_path, cfg)
    o = r.outputs
    ref = (shared_data / "speech-jfk" / "jfk.txt").read_text()
    w = _wer(ref, o["transcript"])
    p = o["prosody"]
    print(o["transcript"], f"WER={w:.3f}", o["tone_description"], sep="\n")
    assert w < 0.3
    assert o["asr"]["language"] == "en" and len(o["asr"]["words"]) >= 18
    assert 70 < p["pitch_median_hz"] < 350 and p["pitch_p5_hz"] < p["pitch_median_hz"] < p["pitch_p95_hz"]
    assert -40 < p["loudness_mean_dbfs"] < -5 and p["loudness_range_db"] > 10
    assert 1.5 < p["speech_rate_wps"] < 4.0
    # the clip has audible pauses after "Americans", "ask not" and "for you,"
    assert p["pause_count"] >= 2 and p["pause_total_s"] > 1.0
    assert f"{p['speech_rate_wps']:.1f} words/s" in o["tone_description"]
    saved = json.loads((tmp_path / "jfk_audio_features.json").read_text())
    assert saved["config"]["asr_model"] == "whisper-base" and saved["outputs"]["asr"]["model"]["sha256"]
    assert run_audio(s, tmp_path, cfg).reused


def test_librivox_wer(shared_data, tmp_path):
    _need_whisper()
    d = shared_data / "speech-librivox"
    refs = {}
    for line in (d / "transcription").read_text().splitlines():
        m = re.match(r"<s>(.*)</s>\s*\((.+)\)", line.strip())
        if m:
            refs[m.group(2)] = m.group(1).strip()
    cfg = load_config(sets=["generate.asr_language=en"])
    wers = []
    for fid, ref in sorted(refs.items())[:3]:
        s = Sample(id=fid, type="audio", audio=d / f"{fid}.wav")
        run_media(s, tmp_path / fid, cfg)
        o = run_audio(s, tmp_path / fid, cfg).outputs
        wers.append(_wer(ref, o["transcript"]))
        p = o["prosody"]
        print(fid, f"WER={wers[-1]:.3f}", o["transcript"], "|", o["tone_description"])
        assert 50 < p["pitch_median_hz"] < 300 and -50 < p["loudness_mean_dbfs"] < 0
        assert 1.0 < p["speech_rate_wps"] < 5.0
    assert np.mean(wers) < 0.3


def test_silent_video_has_no_audio_features(shared_data, tmp_path):
    s = Sample(id="wl", video=shared_data / "faces" / "WolfgangLanger_Pexels.mp4")
    cfg = load_config()
    run_media(s, tmp_path, cfg)
    o = run_audio(s, tmp_path, cfg).outputs
    assert o["has_audio"] is False and "silence" in o["reason"] and o["tone_description"] is None


def test_needs_media_stage(tmp_path):
    with pytest.raises(StageError, match="media stage"):
        run_audio(Sample(id="x", audio=tmp_path / "x.wav"), tmp_path, load_config())


def test_arousal_correlation_report(shared_data):
    """Measured only: does loudness / pitch range follow the annotated arousal? (reported, not asserted)."""
    from scipy.stats import spearmanr

    d = shared_data / "speech-emotion"
    if len(list(d.glob("*.wav"))) < 47:
        pytest.skip("the 47 speech-emotion clips are only in ../shared/data (tests/data/real has 2)")
    rows = [ln.split(",") for ln in (d / "arousal.csv").read_text().splitlines() if ln.strip()]
    ar, loud, lrange, prange, pmed = [], [], [], [], []
    for name, a in rows:
        m = prosody(load_audio(d / name, sr=16000))
        if m["pitch_median_hz"] is None or m["loudness_mean_dbfs"] is None:
            continue
        ar.append(float(a))
        loud.append(m["loudness_mean_dbfs"])
        lrange.append(m["loudness_range_db"])
        prange.append(m["pitch_range_semitones"])
        pmed.append(m["pitch_median_hz"])
    assert len(ar) >= 40
    for label, v in (("loudness mean", loud), ("loudness range", lrange), ("pitch range st", prange),
                     ("pitch median", pmed)):
        rho, p = spearmanr(ar, v)
        print(f"arousal vs {label}: spearman rho={rho:.3f} p={p:.3g} (n={len(ar)})")
        assert np.isfinite(rho)
