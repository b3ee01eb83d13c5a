"""Stage ``peaks``: emotional peaks and the overall peak frame from the OpenFace-format ``<id>.csv``.

Rules (``generate.peak_rule``):

* ``mer-factory`` (MER-Factory's): overall intensity per frame = sum of every ``AUxx_r`` column; peaks are
  ``scipy.signal.find_peaks(intensity, height=generate.threshold, distance=generate.peak_distance)``; the
  overall peak is the frame of maximum intensity (the first one on ties, as pandas ``idxmax``).
* ``merr`` (MERR / Emotion-LLaMA: "the frame where the summed amplitude of the most frequent AUs is
  highest"). Our reading of "most frequent": the :data:`MERR_TOP_N` (3) AUs that are present (``_c`` = 1)
  in the most valid frames (ties broken by the higher mean ``_r`` over valid frames, then AU number);
  the per-frame intensity is the sum of those AUs' ``_r``, and peaks / overall peak are found on it as above.

Frames OpenFace did not track (``success`` == 0) or tracked with ``confidence`` < :data:`MIN_CONFIDENCE`
are excluded: their intensity is set to ``-inf`` before ``find_peaks`` (so they can neither be a peak
nor satisfy the height) and before the arg-max. MER-Factory itself keeps them; on CSVs where every
frame is tracked (its own example) the two agree. When no frame is valid the stage says so
(``face_detected: false``) and reports no peak at all rather than inventing one.

Each chronological peak becomes MER-Factory's string ``"Peak at 2.88s: angry (slight), ..."`` (``"Peak at frame
86: ..."`` for a table without a ``timestamp`` column): an emotion of
:data:`mer_eval.domain.facs.MER_FACTORY_RULES` fires when at least half its AUs are present by ``_c`` and the mean
``_r`` of its AUs (those with an ``_r`` column) reaches ``generate.threshold``; strong at 3x, moderate at 2x,
else slight; emotions sorted by that mean, highest first. As in MER-Factory, a peak where no emotion fires
is left out, an emotion whose ``_c`` columns are not all in the CSV is skipped, and when no peak is left the
list is ``["neutral"]``.

``peak_distance`` counts video frames: for a table holding every n-th frame (the MediaPipe backend caps
its rows) the distance handed to ``find_peaks`` is ``round(peak_distance / n)`` rows.

``overall_peak_frame_info`` = {``frame_number`` (OpenFace's, 1-based), ``timestamp``,
``top_aus_intensities``: AUs at the peak with ``_r`` > 0.8 that have a FACS name}. For a video the peak
frame is decoded (0-based index = frame_number - 1) and saved as ``<id>_peak_frame.png``.
"""

from __future__ import annotations

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
from mer_eval.domain.facs import AU_NAMES, RULE_AUS, au_rule_hits
from mer_eval.domain.openface import OpenFaceData, OpenFaceError, read_openface_csv
from mer_eval.schema import Sample

STAGE = "peaks"
VERSION = "1"
MIN_CONFIDENCE = 0.8
TOP_AU_THRESHOLD = 0.8  # MER-Factory's get_active_aus default
MERR_TOP_N = 3


def valid_frames(of: OpenFaceData, min_confidence: float = MIN_CONFIDENCE) -> np.ndarray:
    return of.valid_mask(min_confidence)


def intensity_series(of: OpenFaceData, rule: str = "mer-factory",
                     min_confidence: float = MIN_CONFIDENCE) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-frame intensity under ``rule``; invalid frames are ``-inf``. Returns (series, rule details)."""
    valid = valid_frames(of, min_confidence)
    details: dict[str, Any] = {"rule": rule}
    if rule == "mer-factory":
        cols = of.au_r
        details["columns"] = "all AUxx_r"
    elif rule == "merr":
        counts = []
        for c in of.au_c:
            r = c[:-2] + "_r"
            if r not in of.data:
                continue
            present = int(np.sum(of.data[c][valid] >= 0.5))
            mean_r = float(np.mean(of.data[r][valid])) if valid.any() else 0.0
            counts.append((present, mean_r, r))
        counts.sort(key=lambda t: (-t[0], -t[1], t[2]))
        chosen = [t for t in counts[:MERR_TOP_N] if t[0] > 0]
        cols = [t[2] for t in chosen]
        details["most_frequent_aus"] = {t[2]: t[0] for t in chosen}
    else:
        raise ValueError(f"unknown peak rule {rule!r}; expected mer-factory or merr")
    if cols:
        series = np.sum([of.data[c] for c in cols], axis=0).astype(float)
    else:
        series = np.zeros(of.n)
    series = np.where(valid, series, -np.inf)
    return series, details


def emotions_at(of: OpenFaceData, idx: int, threshold: float) -> list[dict[str, Any]]:
    """MER-Factory's emotion rules at row ``idx`` (:func:`mer_eval.domain.facs.au_rule_hits`; present means
    ``_c`` == 1, an emotion whose ``_c`` columns are not all in the table is skipped), sorted by the rounded
    score, highest first."""
    present = {a: of.data[f"AU{a}_c"][idx] == 1 for a in RULE_AUS if f"AU{a}_c" in of.data}
    intensity = {a: of.data[f"AU{a}_r"][idx] for a in RULE_AUS if f"AU{a}_r" in of.data}
    out = [{"emotion": h.emotion, "score": round(h.score, 4), "strength": h.strength}
           for h in au_rule_hits("mer-factory", present, intensity, threshold, skip_unknown=True)]
    out.sort(key=lambda e: e["score"], reverse=True)
    return out


def top_aus(of: OpenFaceData, idx: int, threshold: float = TOP_AU_THRESHOLD) -> dict[str, float]:
    return {c: round(float(of.data[c][idx]), 4) for c in of.au_r
            if of.data[c][idx] > threshold and c[2:4] in AU_NAMES}


def analyse(of: OpenFaceData, threshold: float = 0.8, peak_distance: int = 15, rule: str = "mer-factory",
            min_confidence: float = MIN_CONFIDENCE) -> dict[str, Any]:
    """Peaks of one OpenFace table; pure function (no files)."""
    from scipy.signal import find_peaks

    series, details = intensity_series(of, rule, min_confidence)
    valid = np.isfinite(series)
    n_valid = int(valid.sum())
    frames = of.data["frame"]
    ts = of.data.get("timestamp")
    out: dict[str, Any] = {"rule": details, "frames": of.n, "valid_frames": n_valid,
                           "min_confidence": min_confidence, "threshold": threshold,
                           "peak_distance": peak_distance}
    if n_valid == 0:
        out.update(face_detected=False, chronological_emotion_peaks=[], peaks=[],
                   overall_peak_frame_info=None,
                   reason=f"no face: none of the {of.n} frames has success 1 and confidence >= {min_confidence}")
        return out
    # peak_distance is in video frames; a table of every n-th frame (MediaPipe's capped rows) spaces
    # its rows n frames apart, so find_peaks gets the distance in rows.
    step = float(np.median(np.diff(frames))) if of.n > 1 else 1.0
    row_distance = max(1, round(peak_distance / max(step, 1.0)))
    out["row_distance"] = row_distance
    idxs, _ = find_peaks(series, height=threshold, distance=row_distance)
    peaks, strings = [], []
    for i in idxs:
        t = float(ts[i]) if ts is not None else None
        emos = emotions_at(of, int(i), threshold)
        peaks.append({"frame_number": int(frames[i]), "timestamp": t, "intensity": round(float(series[i]), 4),
                      "emotions": emos})
        if emos:  # a table without timestamps names the frame instead (a peak is never dropped to "neutral")
            when = f"{t:.2f}s" if t is not None else f"frame {int(frames[i])}"
            strings.append(f"Peak at {when}: " + ", ".join(f"{e['emotion']} ({e['strength']})" for e in emos))
    best = int(np.argmax(series))  # first maximum; -inf frames never win while a valid one exists
    out.update(
        face_detected=True,
        peaks=peaks,
        chronological_emotion_peaks=strings or ["neutral"],
        overall_peak_frame_info={
            "frame_number": int(frames[best]),
            "timestamp": round(float(ts[best]), 3) if ts is not None else None,
            "top_aus_intensities": top_aus(of, best),
        },
        overall_peak_intensity=round(float(series[best]), 4),
        overall_peak_row=best,
    )
    return out


def _au_csv(sample: Sample, sample_dir: Path) -> Path:
    p = Path(sample_dir) / f"{sample.id}.csv"
    if p.is_file():
        return p
    if sample.openface_csv is not None and Path(sample.openface_csv).is_file():
        return Path(sample.openface_csv)
    raise StageError(STAGE, f"no AU table: {p} is missing (run the au stage first) and the sample has no "
                            "openface_csv")


def _to_rgb_array(frame: Any) -> np.ndarray:
    if hasattr(frame, "convert"):  # PIL image
        return np.asarray(frame.convert("RGB"))
    if hasattr(frame, "to_ndarray"):  # av.VideoFrame
        return frame.to_ndarray(format="rgb24")
    arr = np.asarray(frame)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return arr.astype(np.uint8)


def save_peak_frame(video: Path, frame_number: int, out: Path) -> Path:
    """Decode OpenFace frame ``frame_number`` (1-based) = decode index ``frame_number - 1``; save as PNG."""
    from PIL import Image

    from mer_eval.domain.media import MediaError, read_video_frames

    try:
        frames = read_video_frames(video, indices=[int(frame_number) - 1])
    except MediaError as e:
        raise StageError(STAGE, f"could not decode peak frame {frame_number} (index {frame_number - 1}): {e}") \
            from None
    if not frames:
        raise StageError(STAGE, f"could not decode frame {frame_number} (index {frame_number - 1}) of {video.name}")
    Image.fromarray(_to_rgb_array(frames[0][2])).save(out)
    return out


def run_peaks(sample: Sample, sample_dir: Path, config: Config) -> StageResult:
    sample_dir = Path(sample_dir)
    sample_dir.mkdir(parents=True, exist_ok=True)
    g = config.generate
    csv_path = _au_csv(sample, sample_dir)
    cfg = {"threshold": g.threshold, "peak_distance": g.peak_distance, "peak_rule": g.peak_rule,
           "min_confidence": MIN_CONFIDENCE}
    fp = fingerprint([csv_path, sample.video], cfg)
    saved = load_fresh(stage_json_path(sample.id, sample_dir, STAGE), STAGE, VERSION, fp)
    if saved is not None:
        return reuse(saved, sample.id, sample_dir, STAGE)
    try:
        of = read_openface_csv(csv_path)
    except OpenFaceError as e:
        raise StageError(STAGE, f"unreadable AU table {csv_path}: {e}") from None
    if of.n == 0:
        raise StageError(STAGE, f"AU table {csv_path} has no usable rows ({'; '.join(of.notes[:3])})")
    notes = list(of.notes)
    res = analyse(of, g.threshold, g.peak_distance, g.peak_rule, MIN_CONFIDENCE)
    au = read_stage_outputs(sample.id, sample_dir, "au") or {}
    res["au_source"] = au.get("au_source") or ("openface" if csv_path == sample.openface_csv else None)
    res["au_csv"] = str(csv_path)
    files: list[Path] = []
    if not res["face_detected"]:
        notes.append(res["reason"])
    elif sample.video is not None:
        png = sample_dir / f"{sample.id}_peak_frame.png"
        fn = res["overall_peak_frame_info"]["frame_number"]
        save_peak_frame(Path(sample.video), fn, png)
        files.append(png)
        res["peak_frame_image"] = str(png)
    elif sample.image is not None:
        res["peak_frame_image"] = str(sample.image)
    return finish(sample.id, sample_dir, STAGE, VERSION, fp, res, files, notes)
