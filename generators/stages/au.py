"""Stage ``au``: facial Action Units per frame as an OpenFace-format ``sample_dir/<id>.csv``.

Backends (``generate.au_backend``):

* ``openface``: a precomputed OpenFace CSV beside the clip (``sample.openface_csv``) is copied to
  ``<id>.csv``; otherwise, when ``generate.openface_bin`` names OpenFace's ``FeatureExtraction`` (images:
  ``FaceLandmarkImg`` in the same folder), it is run as ``FeatureExtraction -f <video> -out_dir <tmp> -aus``
  and its ``<stem>.csv`` becomes ``<id>.csv``.
* ``mediapipe``: :func:`mer_eval.domain.face.detect_video` (MediaPipe FaceLandmarker blendshapes mapped onto
  OpenFace's AUs) on every frame of the clip, capped at ``generate.au_max_frames`` rows (every n-th frame,
  n = ceil(frames / cap)); an image gives one row (frame 1, timestamp 0). Frames without a face are written
  with ``success`` 0 and ``confidence`` 0 (AU columns 0, never NaN) and are excluded downstream. MediaPipe
  gives no per-face score: ``confidence`` 1.0 only means "face found", and ``<id>_au.json`` says so
  (``confidence_column``).
* ``pyfeat``: py-feat's ``Detector`` when the ``feat`` package is importable and its weights are on disk;
  otherwise the stage fails with the reason (it never downloads).
* ``auto``: openface when a precomputed CSV or ``openface_bin`` is there, else mediapipe, else pyfeat.

``<id>_au.json`` records ``au_source`` (openface | mediapipe | pyfeat), how it was produced
(``au_origin``), frame counts and the model used, so the AU-F1 metric can tell independent evidence
(OpenFace run on the clip) from a self-check (AUs our own generator also wrote into the annotation).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from mer_eval.generators.stages import (
    StageError,
    StageResult,
    fingerprint,
    finish,
    load_fresh,
    reuse,
    stage_json_path,
)

from mer_eval.config import Config
from mer_eval.domain.openface import OpenFaceError, read_openface_csv
from mer_eval.schema import Sample

STAGE = "au"
VERSION = "1"
OPENFACE_TIMEOUT_S = 1800


def _media(sample: Sample) -> tuple[str, Path]:
    if sample.video is not None:
        return "video", Path(sample.video)
    if sample.image is not None:
        return "image", Path(sample.image)
    raise StageError(STAGE, "no video or image: facial AUs need a face to look at")


def choose_backend(sample: Sample, config: Config) -> str:
    b = config.generate.au_backend
    if b != "auto":
        return b
    if sample.openface_csv is not None and Path(sample.openface_csv).is_file():
        return "openface"
    if config.generate.openface_bin:
        return "openface"
    from mer_eval.domain import face

    if face.resolution(config).available:
        return "mediapipe"
    why = pyfeat_unavailable()
    if why is None:
        return "pyfeat"
    raise StageError(STAGE, "no AU backend: no precomputed OpenFace CSV, generate.openface_bin not set, "
                            f"MediaPipe face-landmarker: {face.resolution(config).reason}; py-feat: {why}")


def _summarise(csv_path: Path) -> dict[str, Any]:
    try:
        of = read_openface_csv(csv_path)
    except (OSError, OpenFaceError) as e:
        raise StageError(STAGE, f"AU table {csv_path} is unreadable: {e}") from None
    return {"frames": of.n, "face_frames": int(of.valid_mask(0.0).sum()), "csv_notes": of.notes}


# ---- backends -------------------------------------------------------------------------------------

def _openface(sample: Sample, kind: str, media: Path, out_csv: Path, config: Config) -> dict[str, Any]:
    if sample.openface_csv is not None and Path(sample.openface_csv).is_file():
        src = Path(sample.openface_csv)
        if src.resolve() != out_csv.resolve():
            shutil.copyfile(src, out_csv)
        return {"au_origin": f"precomputed OpenFace CSV {src}"}
    binary = config.generate.openface_bin
    if not binary:
        raise StageError(STAGE, "au_backend openface: the sample has no OpenFace CSV beside it and "
                                "generate.openface_bin is not set")
    exe = Path(binary)
    if kind == "image":
        exe = exe.with_name("FaceLandmarkImg")
    if not exe.is_file():
        raise StageError(STAGE, f"OpenFace executable {exe} does not exist")
    with tempfile.TemporaryDirectory(prefix="mer-eval-openface-") as tmp:
        cmd = [str(exe), "-f", str(media), "-out_dir", tmp, "-aus"]
        try:
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=OPENFACE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise StageError(STAGE, f"running {' '.join(cmd)} failed: {e}") from None
        produced = Path(tmp) / f"{media.stem}.csv"
        if proc.returncode != 0 or not produced.is_file():
            tail = (proc.stderr or proc.stdout or "").strip()[-400:]
            raise StageError(STAGE, f"{exe.name} exited {proc.returncode} without {produced.name}: {tail}")
        shutil.copyfile(produced, out_csv)
    return {"au_origin": f"{exe.name} run on {media.name}", "command": cmd}


def _mediapipe(kind: str, media: Path, out_csv: Path, config: Config) -> dict[str, Any]:
    from mer_eval.domain import face
    from mer_eval.domain.media import MediaError, load_image, probe
    from mer_eval.metric import ModelUnavailable

    try:
        if kind == "image":
            r = face.detect_one(load_image(media), config)
            row: dict[str, Any] = {"frame": 1, "face_id": 0, "timestamp": 0.0,
                                   "confidence": 1.0 if r else 0.0, "success": 1 if r else 0}
            if r is not None:
                row.update(r.aus)
                row.update(r.presence)
            rows = [row]
            every_n = 1
        else:
            info = probe(media)
            n = info.n_frames or 0
            cap = config.generate.au_max_frames
            every_n = max(1, math.ceil(n / cap)) if n else 1
            rows = []
            for row in face.detect_video(media, every_n=every_n, config=config):
                rows.append(row)
                if len(rows) >= cap:
                    break
    except ModelUnavailable as e:
        raise StageError(STAGE, f"MediaPipe AU backend unavailable: {e}") from None
    except (MediaError, ValueError) as e:
        raise StageError(STAGE, f"cannot decode {media.name}: {e}") from None
    if not rows:
        raise StageError(STAGE, f"{media.name}: no frame could be decoded")
    face.write_openface_csv(rows, out_csv)
    return {"au_origin": f"MediaPipe FaceLandmarker blendshapes -> AUs on {media.name}", "every_n": every_n,
            "model": face.model_ref(config),
            "confidence_column": "not measured: MediaPipe gives no per-face score; 1.0 = face found, 0.0 = none"}


def pyfeat_unavailable() -> str | None:
    """None when py-feat can run offline here, else why not."""
    import importlib.util

    spec = importlib.util.find_spec("feat")
    if spec is None or not spec.submodule_search_locations:
        return "the py-feat package (module feat) is not installed"
    res = Path(next(iter(spec.submodule_search_locations))) / "resources"
    weights = [p for p in res.rglob("*") if p.suffix in (".pth", ".pt", ".onnx", ".safetensors", ".joblib")] \
        if res.is_dir() else []
    if not weights:
        return f"py-feat is installed but has no model weights under {res} (it would download them)"
    return None


def _pyfeat(kind: str, media: Path, out_csv: Path) -> dict[str, Any]:
    why = pyfeat_unavailable()
    if why is not None:
        raise StageError(STAGE, f"py-feat AU backend unavailable: {why}")
    from feat import Detector  # type: ignore[import-not-found]

    from mer_eval.domain import face

    det = Detector()
    fex = det.detect_image(str(media)) if kind == "image" else det.detect_video(str(media))
    rows = []
    for i, rec in enumerate(fex.to_dict("records")):
        ok = not any(isinstance(rec.get(f"AU{a}"), float) and math.isnan(rec.get(f"AU{a}"))
                     for a in ("01", "12"))
        row: dict[str, Any] = {"frame": int(rec.get("frame", i)) + 1, "face_id": 0,
                               "timestamp": float(rec.get("approx_time", 0.0) or 0.0),
                               "confidence": float(rec.get("FaceScore", 0.0) or 0.0) if ok else 0.0,
                               "success": 1 if ok else 0}
        if ok:
            for c in face.R_COLUMNS + face.C_COLUMNS:
                v = rec.get(c[:4])
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                row[c] = 5.0 * float(v) if c.endswith("_r") else float(float(v) >= 0.5)
        rows.append(row)
    face.write_openface_csv(rows, out_csv)
    return {"au_origin": f"py-feat Detector on {media.name} (AU probabilities x5 as _r, >= 0.5 as _c)"}


def run_au(sample: Sample, sample_dir: Path, config: Config) -> StageResult:
    sample_dir = Path(sample_dir)
    sample_dir.mkdir(parents=True, exist_ok=True)
    kind, media = _media(sample)
    if not media.is_file():
        raise StageError(STAGE, f"{kind} file {media} does not exist")
    backend = choose_backend(sample, config)
    g = config.generate
    cfg = {"backend": backend, "openface_bin": g.openface_bin, "au_max_frames": g.au_max_frames}
    fp = fingerprint([media, Path(sample.openface_csv) if sample.openface_csv else None], cfg)
    saved = load_fresh(stage_json_path(sample.id, sample_dir, STAGE), STAGE, VERSION, fp)
    if saved is not None:
        return reuse(saved, sample.id, sample_dir, STAGE)
    out_csv = sample_dir / f"{sample.id}.csv"
    if backend == "openface":
        info = _openface(sample, kind, media, out_csv, config)
    elif backend == "mediapipe":
        info = _mediapipe(kind, media, out_csv, config)
    elif backend == "pyfeat":
        info = _pyfeat(kind, media, out_csv)
    else:  # pragma: no cover - config validation forbids it
        raise StageError(STAGE, f"unknown AU backend {backend!r}")
    summary = _summarise(out_csv)
    notes = list(summary.pop("csv_notes"))
    if summary["face_frames"] == 0:
        notes.append(f"no face found in any of the {summary['frames']} analysed frames")
    out = {"au_source": backend, "csv": str(out_csv), "kind": kind, **info, **summary}
    return finish(sample.id, sample_dir, STAGE, VERSION, fp, out, [out_csv], notes)
