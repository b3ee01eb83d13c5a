"""Facial Action Units in-process: MediaPipe FaceLandmarker blendshapes mapped onto OpenFace's AUs.

MediaPipe's FaceLandmarker (Tasks API, IMAGE running mode, ``output_face_blendshapes=True``) gives 52
ARKit-style blendshape scores in [0, 1] per face. :func:`detect` maps them onto OpenFace 2.x's AU set so the
rest of mer-eval (AU text, emotion rules, AU-F1) can treat them like OpenFace output. The weights are the
``.task`` file that :func:`mer_eval.models.resolve` finds for key ``face-landmarker``; the landmarker is
loaded once per process. mediapipe is imported lazily.

Blendshape -> AU map (``L/R`` = the mean of the ``...Left`` and ``...Right`` scores):

=====  ========================  ==================================================================
AU     FACS name                 blendshape(s)
=====  ========================  ==================================================================
AU01   Inner brow raiser         browInnerUp
AU02   Outer brow raiser         browOuterUp L/R
AU04   Brow lowerer              browDown L/R
AU05   Upper lid raiser          eyeWide L/R
AU06   Cheek raiser              cheekSquint L/R
AU07   Lid tightener             eyeSquint L/R
AU09   Nose wrinkler             noseSneer L/R
AU10   Upper lip raiser          mouthUpperUp L/R
AU12   Lip corner puller         mouthSmile L/R
AU14   Dimpler                   mouthDimple L/R
AU15   Lip corner depressor      mouthFrown L/R
AU17   Chin raiser               mouthShrugLower
AU20   Lip stretcher             mouthStretch L/R
AU23   Lip tightener             mouthPress L/R
AU25   Lips part                 max(jawOpen - mouthClose, mouthLowerDown L/R), floored at 0
AU26   Jaw drop                  jawOpen
AU28   Lip suck (presence only)  max(mouthRollLower, mouthRollUpper)
AU45   Blink                     eyeBlink L/R
=====  ========================  ==================================================================

Choices that need a word:

* AU23 <- mouthPress, not mouthPucker: mouthPucker is the lips pushed forward and rounded (AU18, which
  OpenFace does not measure); mouthPress is the lips pressed and narrowed, the nearest blendshape to the
  lip tightener (AU23, with AU24's pressing folded in since OpenFace has no AU24).
* AU25 (lips part): ARKit's ``mouthClose`` is "lips closed *while the jaw is open*", so ``jawOpen -
  mouthClose`` is how far the lips are actually apart when the jaw drops; lips can also part with the jaw
  closed when the lower lip is pulled down (``mouthLowerDown``), hence the max of the two.
* AU28 (lip suck): mouthRollLower / mouthRollUpper roll the lips in over the teeth; OpenFace reports AU28 as
  presence only, so it appears in :attr:`FaceResult.presence` (``AU28_c``), never in ``aus``.

Scaling and presence: ``intensity = clip(5 * score, 0, 5)`` puts a blendshape score on OpenFace's 0-5
intensity scale (score 0.2 -> 1.0, "trace" on FACS' A-E scale); an AU is present (``AUxx_c = 1``) when its
intensity is >= :data:`PRESENCE_THRESHOLD` (1.0), i.e. a blendshape score >= 0.2.

Known limit, measured on the real photos in ``shared/data/faces``: MediaPipe's ``cheekSquint`` stays near 0
even on a Duchenne smile (happy photo: AU12 4.04, AU07 2.79, AU06 < 1), so AU06 is under-detected and the
eye narrowing of a genuine smile shows up as AU07. The map is left faithful to the blendshape names rather
than tuned to these photos.

Blendshape scores are not calibrated FACS intensities: the mapping gives the same *names* and a comparable
*range*, not OpenFace's numbers. A face that is not found is ``None``, never a row of zeros.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from mer_eval.domain.facs import OPENFACE_C_AUS, OPENFACE_R_AUS

MODEL_KEY = "face-landmarker"
SCALE = 5.0  # blendshape score (0..1) -> OpenFace intensity (0..5)
PRESENCE_THRESHOLD = 1.0  # intensity at or above which AUxx_c = 1

# AU -> (how, blendshape names). how: "mean" of the names, "max" of the names.
AU_BLENDSHAPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "01": ("mean", ("browInnerUp",)),
    "02": ("mean", ("browOuterUpLeft", "browOuterUpRight")),
    "04": ("mean", ("browDownLeft", "browDownRight")),
    "05": ("mean", ("eyeWideLeft", "eyeWideRight")),
    "06": ("mean", ("cheekSquintLeft", "cheekSquintRight")),
    "07": ("mean", ("eyeSquintLeft", "eyeSquintRight")),
    "09": ("mean", ("noseSneerLeft", "noseSneerRight")),
    "10": ("mean", ("mouthUpperUpLeft", "mouthUpperUpRight")),
    "12": ("mean", ("mouthSmileLeft", "mouthSmileRight")),
    "14": ("mean", ("mouthDimpleLeft", "mouthDimpleRight")),
    "15": ("mean", ("mouthFrownLeft", "mouthFrownRight")),
    "17": ("mean", ("mouthShrugLower",)),
    "20": ("mean", ("mouthStretchLeft", "mouthStretchRight")),
    "23": ("mean", ("mouthPressLeft", "mouthPressRight")),
    "25": ("lips_part", ("jawOpen", "mouthClose", "mouthLowerDownLeft", "mouthLowerDownRight")),
    "26": ("mean", ("jawOpen",)),
    "28": ("max", ("mouthRollLower", "mouthRollUpper")),
    "45": ("mean", ("eyeBlinkLeft", "eyeBlinkRight")),
}

R_COLUMNS = tuple(f"AU{a}_r" for a in OPENFACE_R_AUS)
C_COLUMNS = tuple(f"AU{a}_c" for a in OPENFACE_C_AUS)
CSV_COLUMNS = ("frame", "face_id", "timestamp", "confidence", "success") + R_COLUMNS + C_COLUMNS


@dataclass
class FaceResult:
    """The primary (largest) face of one image."""

    blendshapes: dict[str, float]  # MediaPipe's 52 scores, 0..1
    aus: dict[str, float]  # AUxx_r on OpenFace's 0..5 scale (OpenFace's _r set)
    presence: dict[str, float]  # AUxx_c, 0.0 / 1.0 (OpenFace's _c set, AU28 included)
    bbox: tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels, from the landmarks, clipped to the image
    n_faces: int  # faces found in the image
    image_size: tuple[int, int] = (0, 0)  # (width, height)
    extra: dict[str, Any] = field(default_factory=dict)

    def present(self) -> list[str]:
        """AU numbers (``"06"``) marked present."""
        return [c[2:4] for c, v in self.presence.items() if v >= 0.5]


def blendshapes_to_aus(bs: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """Blendshape scores -> (``AUxx_r`` intensities 0..5, ``AUxx_c`` presences 0/1). See the module table."""
    raw: dict[str, float] = {}
    for au, (how, names) in AU_BLENDSHAPES.items():
        vals = [float(bs.get(n, 0.0)) for n in names]
        if how == "mean":
            s = sum(vals) / len(vals)
        elif how == "max":
            s = max(vals)
        elif how == "lips_part":
            jaw, close, ld_l, ld_r = vals
            s = max(jaw - close, (ld_l + ld_r) / 2.0)
        else:  # pragma: no cover - table is static
            raise ValueError(how)
        raw[au] = float(min(max(SCALE * s, 0.0), SCALE))
    aus = {f"AU{a}_r": round(raw[a], 4) for a in OPENFACE_R_AUS}
    presence = {f"AU{a}_c": 1.0 if raw[a] >= PRESENCE_THRESHOLD else 0.0 for a in OPENFACE_C_AUS}
    return aus, presence


# ---- the landmarker ---------------------------------------------------------------------------------

_LOCK = threading.Lock()  # serialises detect() calls on the one landmarker
_LOAD_LOCK = threading.Lock()  # one load even when generator threads ask at once


def resolution(config: Any = None):
    """Where the ``.task`` file is (a :class:`mer_eval.models.Resolution`)."""
    from mer_eval import models

    if config is not None:
        return models.resolve_from_config(MODEL_KEY, config)
    return models.resolve(MODEL_KEY)


def model_ref(config: Any = None) -> dict:
    return resolution(config).ref()


def get_landmarker(config: Any = None, num_faces: int = 5):
    """The FaceLandmarker, created once per process per (task file, num_faces).

    Raises :class:`mer_eval.metric.ModelUnavailable` with the places looked when the ``.task`` file or the
    mediapipe package is missing.
    """
    from mer_eval.metric import ModelUnavailable
    from mer_eval.models import load_once

    res = resolution(config)
    if not res.available or res.path is None:
        raise ModelUnavailable(res.reason or f"{MODEL_KEY}: not found; looked in {'; '.join(res.looked)}")
    path = Path(res.path)

    def _load():
        try:
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as e:
            raise ModelUnavailable(f"{MODEL_KEY}: the mediapipe package is not installed ({e})") from None
        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            output_face_blendshapes=True,
            num_faces=int(num_faces),
        )
        lm = vision.FaceLandmarker.create_from_options(opts)
        import atexit

        atexit.register(_close_quietly, lm)  # closing in __del__ at interpreter exit raises noise
        return lm

    with _LOAD_LOCK:
        return load_once(("face-landmarker", str(path.resolve()), int(num_faces)), _load)


def _close_quietly(lm) -> None:
    try:
        lm.close()
    except (RuntimeError, TypeError, ValueError):
        pass
    # mediapipe's __del__ calls close() again during interpreter shutdown, when its C dispatcher is already
    # gone ("'NoneType' object is not callable" printed after every run): closed once is enough
    lm.close = lambda: None


ImageLike = Union[np.ndarray, "Any", str, Path]


def to_rgb_array(img: ImageLike) -> np.ndarray:
    """numpy HxWx3 uint8 RGB (also HxW grey, HxWx4 RGBA), PIL image, or an image path -> contiguous RGB."""
    if isinstance(img, (str, Path)):
        from PIL import Image

        from mer_eval.domain.media import image_to_rgb

        with Image.open(img) as im:
            return np.ascontiguousarray(np.asarray(image_to_rgb(im)))
    if isinstance(img, np.ndarray):
        a = img
        if a.ndim == 2:
            a = np.stack([a] * 3, axis=-1)
        if a.ndim != 3 or a.shape[2] not in (3, 4):
            raise ValueError(f"expected an HxWx3 RGB array, got shape {img.shape}")
        if a.shape[2] == 4:
            a = a[:, :, :3]
        if a.dtype != np.uint8:
            if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
                a = a * 255.0
            a = np.clip(a, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(a)
    if hasattr(img, "convert"):  # PIL
        return np.ascontiguousarray(np.asarray(img.convert("RGB")))
    raise TypeError(f"not an image: {type(img).__name__}")


def _bbox(landmarks, w: int, h: int) -> tuple[int, int, int, int]:
    xs = [p.x for p in landmarks]
    ys = [p.y for p in landmarks]
    x0 = int(max(0, math.floor(min(xs) * w)))
    y0 = int(max(0, math.floor(min(ys) * h)))
    x1 = int(min(w, math.ceil(max(xs) * w)))
    y1 = int(min(h, math.ceil(max(ys) * h)))
    return x0, y0, x1, y1


def detect_one(img: ImageLike, config: Any = None, num_faces: int = 5) -> FaceResult | None:
    """AUs of the largest face in one image; None when no face is found."""
    lm = get_landmarker(config, num_faces)  # first: a missing model or package is ModelUnavailable
    import mediapipe as mp

    arr = to_rgb_array(img)
    h, w = arr.shape[:2]
    with _LOCK:  # one graph per process; IMAGE mode calls are serialised
        res = lm.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=arr))
    faces = list(res.face_landmarks or [])
    if not faces:
        return None
    boxes = [_bbox(f, w, h) for f in faces]
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    i = int(np.argmax(areas))
    if not res.face_blendshapes or i >= len(res.face_blendshapes):
        raise RuntimeError("FaceLandmarker returned landmarks without blendshapes")
    bs = {c.category_name: float(c.score) for c in res.face_blendshapes[i]}
    aus, presence = blendshapes_to_aus(bs)
    return FaceResult(blendshapes=bs, aus=aus, presence=presence, bbox=boxes[i], n_faces=len(faces),
                      image_size=(w, h), extra={"all_bboxes": boxes})


def detect(images: Iterable[ImageLike], config: Any = None, num_faces: int = 5) -> list[FaceResult | None]:
    """One :class:`FaceResult` (largest face) or None (no face) per image."""
    return [detect_one(im, config, num_faces) for im in images]


# ---- video -> OpenFace-like rows ----------------------------------------------------------------------

def _frames_pyav(path: Path, every_n: int, max_frames: int | None) -> Iterator[tuple[int, float, Any]]:
    """(0-based frame index, timestamp s, PIL image), streamed so long videos never sit in memory."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{Path(path).name}: no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else None
        taken = 0
        for i, frame in enumerate(container.decode(stream)):
            if i % every_n:
                continue
            if frame.pts is not None and frame.time_base is not None:
                ts = float(frame.pts * frame.time_base)
            elif fps:
                ts = i / fps
            else:
                ts = float("nan")
            yield i, ts, frame.to_image()
            taken += 1
            if max_frames is not None and taken >= max_frames:
                return


def _frames(path: Path, every_n: int, max_frames: int | None) -> Iterator[tuple[int, float, Any]]:
    """Frames via ``mer_eval.domain.media.read_video_frames`` when it exists and the count is bounded, else PyAV.

    ``read_video_frames`` returns a list (all requested frames decoded into memory) and refuses indices
    past the end, so it is used only with ``max_frames`` and a known frame count; otherwise, or when the
    container overstated its frame count, frames are streamed with PyAV.
    """
    if max_frames is not None:
        try:
            from mer_eval.domain import media
        except ImportError:
            media = None  # type: ignore[assignment]
        if media is not None and hasattr(media, "read_video_frames") and hasattr(media, "probe"):
            n = media.probe(path).n_frames
            if n:
                indices = [i for i in (k * every_n for k in range(int(max_frames))) if i < n]
                try:
                    got = media.read_video_frames(path, indices=indices)
                except media.MediaError:
                    got = None
                if got is not None:
                    for idx, ts, im in got:
                        yield int(idx), float(ts), im
                    return
    yield from _frames_pyav(path, every_n, max_frames)


def detect_video(path: str | Path, every_n: int = 1, max_frames: int | None = None,
                 config: Any = None) -> Iterator[dict[str, float]]:
    """OpenFace-like rows, one per sampled frame.

    ``frame`` is 1-based (OpenFace's numbering: decoded frame index + 1), ``timestamp`` in seconds,
    ``success`` 1 when a face was found. MediaPipe reports no per-face score, so ``confidence`` is 1.0 for a
    detected face (it passed FaceLandmarker's detection threshold, 0.5) and 0.0 without one. Rows without a
    face carry no AU keys (:func:`write_openface_csv` writes zeros there, as OpenFace does, with success 0).
    """
    every_n = max(1, int(every_n))
    for idx, ts, im in _frames(Path(path), every_n, max_frames):
        r = detect_one(im, config)
        row: dict[str, float] = {"frame": idx + 1, "face_id": 0, "timestamp": ts,
                                 "confidence": 1.0 if r else 0.0, "success": 1 if r else 0}
        if r is not None:
            row.update(r.aus)
            row.update(r.presence)
            row["n_faces"] = r.n_faces
        yield row


def write_openface_csv(rows: Iterable[dict[str, float]], path: str | Path) -> Path:
    """Write rows in OpenFace 2.x's layout (``frame, face_id, timestamp, confidence, success, AU.._r, AU.._c``).

    Headers and values are separated by ``", "`` as OpenFace writes them. AU columns of frames without a face
    are written as 0 with ``success`` 0, as OpenFace does; readers must filter on ``success``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [", ".join(CSV_COLUMNS)]
    for row in rows:
        vals = [
            str(int(row["frame"])),
            str(int(row.get("face_id", 0))),
            f"{float(row['timestamp']):.3f}",
            f"{float(row.get('confidence', 0.0)):.2f}",
            str(int(row.get("success", 0))),
        ]
        ok = int(row.get("success", 0)) == 1
        vals += [f"{float(row.get(c, 0.0)) if ok else 0.0:.2f}" for c in R_COLUMNS]
        vals += [f"{float(row.get(c, 0.0)) if ok else 0.0:.1f}" for c in C_COLUMNS]
        lines.append(", ".join(vals))
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
