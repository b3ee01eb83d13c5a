"""Stage ``audio_features``: Whisper transcript and measured prosody of ``<id>.wav`` (16 kHz mono).

Transcript: faster-whisper with the model ``generate.asr_model`` resolved by
:func:`mer_eval.models.resolve_from_config` (the packaged CTranslate2 weights; never a download unless
``models.allow_download``), loaded once per process (:func:`mer_eval.models.load_once`), CPU int8,
greedy decoding (beam 1), language ``generate.asr_language`` or detected, word timestamps on. When the
model is not available the transcript is ``unavailable`` with the resolver's reason and the prosody is
still measured.

Prosody, measured from the samples only (:func:`prosody`):

* pitch: YIN (de Cheveigne & Kawahara 2002) on 25 ms windows every 10 ms, 60-500 Hz search, CMNDF
  threshold 0.15 with parabolic interpolation; a frame is voiced when YIN finds a dip and the frame is
  within 35 dB of the loudest frame and above -60 dBFS. Reported: median F0 and the range as the 5th-95th
  percentile of voiced
  frames (robust to octave errors), in Hz, plus the voiced share.
* loudness: RMS in dBFS (0 dBFS = full-scale sine-free square, i.e. RMS 1.0) over 50 ms frames every 25 ms;
  frames within 40 dB of the loudest count as active; mean and range (5th-95th percentile) over those.
* speech rate: recognised words / (last word end - first word start), words per second.
* pauses: silences longer than 0.3 s between the first and the last active frame, measured on the signal
  (:func:`silent_pauses`: 50 ms frames, silent = below noise floor + 25 % of the floor-to-speech span).
  Gaps > 0.3 s between Whisper's word timestamps are reported too (``word_gaps``) but are not used for
  the count: Whisper stretches word ends over silences (in JFK's clip "ask" spans 2.10-3.72 s across a
  one-second pause), so word gaps miss most real pauses.

``tone_description`` restates those numbers in words with fixed bins (:data:`RATE_BINS`,
:data:`PITCH_RANGE_BINS` in semitones between p5 and p95, :data:`LOUDNESS_BINS`); it names no emotion.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from mer_eval.generators.stages import (
    StageError,
    StageResult,
    fingerprint,
    finish,
    load_fresh,
    read_stage_outputs,
    reuse,
    stage_json_path,
)

from mer_eval.config import Config
from mer_eval.schema import Sample

STAGE = "audio_features"
VERSION = "1"
SR = 16000
PAUSE_S = 0.3
YIN_THRESHOLD = 0.15
FMIN, FMAX = 60.0, 500.0
ABS_GATE_DBFS = -60.0  # frames quieter than this are never voiced (digital silence, hiss)
RATE_BINS = ((2.0, "slow"), (3.3, "moderate"), (math.inf, "fast"))  # words/s, upper bounds
PITCH_RANGE_BINS = ((4.0, "narrow"), (9.0, "moderate"), (math.inf, "wide"))  # semitones p5..p95
LOUDNESS_BINS = ((-32.0, "quiet"), (-20.0, "moderate"), (math.inf, "loud"))  # mean active dBFS


# ---- measurements -----------------------------------------------------------------------------------

def _frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    if len(x) < length:
        x = np.pad(x, (0, length - len(x)))
    n = 1 + (len(x) - length) // hop
    idx = np.arange(length)[None, :] + hop * np.arange(n)[:, None]
    return x[idx]


def rms_dbfs(x: np.ndarray, sr: int = SR, win_s: float = 0.05, hop_s: float = 0.025) -> np.ndarray:
    f = _frames(np.asarray(x, dtype=np.float64), int(win_s * sr), int(hop_s * sr))
    rms = np.sqrt(np.mean(f * f, axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


YIN_BLOCK_FRAMES = 1000  # frames (10 s of audio) analysed together: memory stays flat however long the audio


def yin(x: np.ndarray, sr: int = SR, fmin: float = FMIN, fmax: float = FMAX, win_s: float = 0.025,
        hop_s: float = 0.01, threshold: float = YIN_THRESHOLD, block_frames: int = YIN_BLOCK_FRAMES,
        ) -> tuple[np.ndarray, np.ndarray]:
    """F0 per frame in Hz (NaN where unvoiced) and the frame RMS in dBFS. Vectorised YIN via FFT, in blocks of
    ``block_frames`` frames (two passes: the frame levels first, for the gate relative to the loudest frame;
    then pitch block by block), so 15 min of audio needs the memory of 10 s and gives the same values."""
    x = np.asarray(x, dtype=np.float64)
    w = int(win_s * sr)
    tau_max = math.ceil(sr / fmin)
    length = w + tau_max + 1
    hop = int(hop_s * sr)
    if len(x) < length:
        x = np.pad(x, (0, length - len(x)))
    n = 1 + (len(x) - length) // hop
    step = max(1, int(block_frames))
    blocks = [(i0, min(n, i0 + step)) for i0 in range(0, n, step)]

    def frames(i0: int, i1: int) -> np.ndarray:
        return _frames(x[hop * i0: hop * (i1 - 1) + length], length, hop)

    frame_db = np.empty(n)
    for i0, i1 in blocks:
        head = frames(i0, i1)[:, :w]
        e1 = np.cumsum(head * head, axis=1)[:, -1]
        frame_db[i0:i1] = 10.0 * np.log10(np.maximum(e1 / w, 1e-20))
    gate = frame_db.max() - 35.0 if n else 0.0
    f0 = np.full(n, np.nan)
    for i0, i1 in blocks:
        f0[i0:i1] = _yin_block(frames(i0, i1), frame_db[i0:i1], gate, sr, fmin, fmax, w, threshold)
    return f0, frame_db


def _yin_block(f: np.ndarray, frame_db: np.ndarray, gate: float, sr: int, fmin: float, fmax: float, w: int,
               threshold: float) -> np.ndarray:
    tau_max = math.ceil(sr / fmin)
    tau_min = max(2, math.floor(sr / fmax))
    length = f.shape[1]
    n_fft = 1 << math.ceil(math.log2(length + w))
    a = np.fft.rfft(f[:, :w], n_fft)
    b = np.fft.rfft(f, n_fft)
    r = np.fft.irfft(np.conj(a) * b, n_fft)[:, : tau_max + 1]  # r[t] = sum_j x_j x_{j+t}, j < w
    del a, b
    sq = np.concatenate([np.zeros((f.shape[0], 1)), np.cumsum(f * f, axis=1)], axis=1)
    taus = np.arange(tau_max + 1)
    e1 = sq[:, w][:, None]
    e2 = sq[:, taus + w] - sq[:, taus]
    d = np.maximum(e1 + e2 - 2.0 * r, 0.0)
    cum = np.cumsum(d[:, 1:], axis=1)
    cmndf = np.ones_like(d)
    cmndf[:, 1:] = d[:, 1:] * taus[1:][None, :] / np.maximum(cum, 1e-12)
    f0 = np.full(f.shape[0], np.nan)
    for i in range(f.shape[0]):
        if frame_db[i] < gate or frame_db[i] < ABS_GATE_DBFS:
            continue
        c = cmndf[i]
        below = np.nonzero(c[tau_min:tau_max] < threshold)[0]
        if not len(below):
            continue
        t = tau_min + int(below[0])
        while t + 1 < tau_max and c[t + 1] < c[t]:
            t += 1
        if 1 <= t < tau_max:
            y0, y1, y2 = c[t - 1], c[t], c[t + 1]
            den = y0 - 2 * y1 + y2
            shift = 0.5 * (y0 - y2) / den if den > 0 else 0.0
            tt = t + float(np.clip(shift, -1, 1))
        else:
            tt = float(t)
        f0[i] = sr / tt
    return f0


def prosody(x: np.ndarray, sr: int = SR) -> dict[str, Any]:
    """Pitch and loudness measurements of mono audio (see the module doc)."""
    x = np.asarray(x, dtype=np.float64)
    out: dict[str, Any] = {"duration_s": round(len(x) / sr, 3)}
    f0, _ = yin(x, sr)
    voiced = f0[np.isfinite(f0)]
    out["voiced_share"] = round(float(len(voiced) / max(1, len(f0))), 3)
    if len(voiced) >= 5:
        p5, med, p95 = np.percentile(voiced, [5, 50, 95])
        out.update(pitch_median_hz=round(float(med), 1), pitch_p5_hz=round(float(p5), 1),
                   pitch_p95_hz=round(float(p95), 1),
                   pitch_range_semitones=round(float(12 * math.log2(p95 / p5)), 2))
    else:
        out.update(pitch_median_hz=None, pitch_p5_hz=None, pitch_p95_hz=None, pitch_range_semitones=None)
    db = rms_dbfs(x, sr)
    active = db[db >= db.max() - 40.0] if len(db) else db
    if len(active) and np.isfinite(active).all() and db.max() > -100:
        lo, hi = np.percentile(active, [5, 95])
        out.update(loudness_mean_dbfs=round(float(np.mean(active)), 2), loudness_p5_dbfs=round(float(lo), 2),
                   loudness_p95_dbfs=round(float(hi), 2), loudness_range_db=round(float(hi - lo), 2))
    else:
        out.update(loudness_mean_dbfs=None, loudness_p5_dbfs=None, loudness_p95_dbfs=None, loudness_range_db=None)
    return out


def silent_pauses(x: np.ndarray, sr: int = SR, pause_s: float = PAUSE_S, hop_s: float = 0.025
                  ) -> list[dict[str, float]]:
    """Runs of silence longer than ``pause_s`` between the first and the last active frame.

    Frame level: RMS dBFS of 50 ms frames every 25 ms. Noise floor = 10th percentile, speech level = 95th;
    silent = below floor + 25 % of (speech - floor). A run of n silent frames lasts n x 25 ms.
    """
    db = rms_dbfs(x, sr, 0.05, hop_s)
    if len(db) < 3:
        return []
    floor, speech = np.percentile(db, [10, 95])
    if speech - floor < 10.0:  # no contrast: nothing to call a pause
        return []
    silent = db < floor + 0.25 * (speech - floor)
    active = np.nonzero(~silent)[0]
    first, last = int(active[0]), int(active[-1])
    out, i = [], first
    while i <= last:
        if silent[i]:
            j = i
            while j <= last and silent[j]:
                j += 1
            dur = (j - i) * hop_s
            if dur > pause_s:
                out.append({"start": round(i * hop_s + 0.025, 2), "seconds": round(dur, 2)})
            i = j
        else:
            i += 1
    return out


def timing(words: list[dict[str, Any]], pause_s: float = PAUSE_S) -> dict[str, Any]:
    """Speech rate and pauses from word timestamps."""
    if not words:
        return {"words": 0, "speech_rate_wps": None, "word_gap_count": None, "word_gap_total_s": None,
                "word_gaps": []}
    span = float(words[-1]["end"]) - float(words[0]["start"])
    pauses = []
    for a, b in itertools.pairwise(words):
        gap = float(b["start"]) - float(a["end"])
        if gap > pause_s:
            pauses.append({"after_word": a["word"].strip(), "start": round(float(a["end"]), 2),
                           "seconds": round(gap, 2)})
    return {"words": len(words), "speech_rate_wps": round(len(words) / span, 2) if span > 0 else None,
            "word_gap_count": len(pauses), "word_gap_total_s": round(sum(p["seconds"] for p in pauses), 2),
            "word_gaps": pauses}


def _bin(v: float, bins) -> str:
    for upper, name in bins:
        if v < upper:
            return name
    return bins[-1][1]


def describe(m: dict[str, Any]) -> str:
    """A tone description that restates the measurements (numbers, no emotion words)."""
    parts = []
    if m.get("speech_rate_wps") is not None:
        parts.append(f"Speech is {_bin(m['speech_rate_wps'], RATE_BINS)} ({m['speech_rate_wps']:.1f} words/s)")
    elif m.get("words") == 0:
        parts.append("No words were recognised")
    if m.get("pitch_median_hz") is not None:
        parts.append(f"a {_bin(m['pitch_range_semitones'], PITCH_RANGE_BINS)} pitch range "
                     f"({m['pitch_p5_hz']:.0f}–{m['pitch_p95_hz']:.0f} Hz, median {m['pitch_median_hz']:.0f} Hz)")
    else:
        parts.append("too little voiced sound to measure pitch")
    if m.get("loudness_mean_dbfs") is not None:
        parts.append(f"{_bin(m['loudness_mean_dbfs'], LOUDNESS_BINS)} delivery (mean {m['loudness_mean_dbfs']:.0f} "
                     f"dBFS, range {m['loudness_range_db']:.0f} dB)")
    text = parts[0] + (" with " + " and ".join(parts[1:]) if len(parts) > 1 else "") + "."
    if m.get("pause_count") is not None:
        if m["pause_count"]:
            text += (f" {m['pause_count']} pause{'s' if m['pause_count'] != 1 else ''} longer than {PAUSE_S:g} s "
                     f"totalling {m['pause_total_s']:.1f} s.")
        else:
            text += f" No pause longer than {PAUSE_S:g} s."
    return text


# ---- transcript -------------------------------------------------------------------------------------

def _whisper(config: Config):
    from mer_eval.models import load_once, resolve_from_config

    res = resolve_from_config(config.generate.asr_model, config)
    if not res.available:
        return None, res, res.reason
    if res.path is None:
        model_id = res.id  # download allowed: faster-whisper fetches it
    else:
        model_id = str(res.path)

    def _load():
        from faster_whisper import WhisperModel

        return WhisperModel(model_id, device="cpu", compute_type="int8")

    return load_once(("faster-whisper", model_id, "cpu", "int8"), _load), res, None


def transcribe(x: np.ndarray, config: Config) -> dict[str, Any]:
    model, res, why = _whisper(config)
    if model is None:
        return {"status": "unavailable", "reason": f"ASR model {config.generate.asr_model}: {why}",
                "model": res.ref() if res else None}
    segments, info = model.transcribe(np.asarray(x, dtype=np.float32), language=config.generate.asr_language,
                                      beam_size=1, word_timestamps=True, vad_filter=False,
                                      condition_on_previous_text=False)
    segs, words = [], []
    for s in segments:
        segs.append({"start": round(s.start, 2), "end": round(s.end, 2), "text": s.text.strip()})
        for w in s.words or []:
            words.append({"word": w.word.strip(), "start": round(float(w.start), 2), "end": round(float(w.end), 2),
                          "probability": round(float(w.probability), 3)})
    return {"status": "ok", "text": " ".join(s["text"] for s in segs).strip(), "language": info.language,
            "language_probability": round(float(info.language_probability), 3), "segments": segs, "words": words,
            "model": res.ref()}


# ---- the stage --------------------------------------------------------------------------------------

def _wav(sample: Sample, sample_dir: Path) -> Path | None:
    p = sample_dir / f"{sample.id}.wav"
    if p.is_file():
        return p
    media = read_stage_outputs(sample.id, sample_dir, "media")
    if media is None:
        raise StageError(STAGE, f"{p} is missing and the media stage has not run for this sample")
    return None


def run_audio(sample: Sample, sample_dir: Path, config: Config) -> StageResult:
    from mer_eval.domain.media import MediaError, load_audio

    sample_dir = Path(sample_dir)
    wav = _wav(sample, sample_dir)
    g = config.generate
    cfg = {"asr_model": g.asr_model, "asr_language": g.asr_language, "pause_s": PAUSE_S}
    fp = fingerprint([wav], cfg)
    saved = load_fresh(stage_json_path(sample.id, sample_dir, STAGE), STAGE, VERSION, fp)
    if saved is not None:
        return reuse(saved, sample.id, sample_dir, STAGE)
    notes: list[str] = []
    if wav is None:
        reason = "no audio: the media stage wrote no wav"
        try:
            media_notes = json.loads(stage_json_path(sample.id, sample_dir, "media").read_text()).get("notes", [])
        except (OSError, ValueError):
            media_notes = []
        if media_notes:
            reason += " (" + "; ".join(media_notes) + ")"
        notes.append(reason)
        out: dict[str, Any] = {"has_audio": False, "reason": reason, "transcript": None, "tone_description": None}
        return finish(sample.id, sample_dir, STAGE, VERSION, fp, out, [], notes)
    try:
        x = load_audio(wav, sr=SR)
    except MediaError as e:
        raise StageError(STAGE, f"cannot read {wav.name}: {e}") from None
    measures = prosody(x, SR)
    pauses = silent_pauses(x, SR)
    measures.update(pause_count=len(pauses), pause_total_s=round(sum(p["seconds"] for p in pauses), 2),
                    pauses=pauses)
    asr = transcribe(x, config)
    if asr["status"] != "ok":
        notes.append(asr["reason"])
        measures.update({"words": None, "speech_rate_wps": None, "word_gap_count": None, "word_gap_total_s": None,
                         "word_gaps": []})
    else:
        measures.update(timing(asr["words"]))
    out = {"has_audio": True, "wav": str(wav), "transcript": asr.get("text"), "asr": asr, "prosody": measures,
           "tone_description": describe(measures)}
    return finish(sample.id, sample_dir, STAGE, VERSION, fp, out, [], notes)
