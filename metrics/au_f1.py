"""AU-F1: the facial Action Units an annotation's text claims versus AUs detected independently.

Claims
    Read from the annotation fields in ``au_f1.texts`` (default ``visual_expression``, ``llm_au_description``,
    ``final_summary``) by :func:`mer_eval.domain.au_claims.extract_claims`: FACS names, everyday synonyms and
    explicit codes (``AU6``, ``AU06_r``, ``AU6+12``), negation-aware (the rules are in that module). Negated
    AUs are *claimed absent*, not present; an AU with both a plain and a negated mention counts as claimed
    present and is listed in ``conflicting``. Claims of AUs OpenFace does not measure (e.g. AU24) are listed
    in ``outside_universe`` and not scored.
    Texts with more than :data:`CJK_MAX` CJK characters are skipped (``skipped_texts``): the vocabulary is
    English, and a Chinese description would otherwise read as "claims nothing".
    No text at all on a ``mer`` / ``au`` sample (types whose result describes the face's AUs) while the source
    detects AUs is ``abstained``, the worst value: saying nothing never scores better than claiming the wrong
    AUs. With nothing detected either, silence is no error (``not_applicable``, F1 undefined).

Detections (``au_f1.source``)
    ``openface``: the sample's OpenFace CSV. Frames with ``success == 1`` and ``confidence >= confidence``
    are valid. The peak is ``annotation.peak_frame`` (an OpenFace frame number, 1-based), else the frame
    nearest ``annotation.peak_timestamp``, else the valid frame of maximum overall intensity (sum of the
    ``_r`` columns, MER-Factory's rule). The window is the valid frames whose number lies within
    ``peak +- window_frames``. An AU is detected when ``(use_presence and mean(AUxx_c) >= 0.5) or
    mean(AUxx_r) >= intensity_threshold`` over the window (AU28 has ``_c`` only).
    A CSV with several faces (``face_id``) is read as one face: the one with the most frames with
    ``success == 1`` and ``confidence >= confidence`` (:func:`mer_eval.domain.openface.read_openface_csv`);
    ``details.face_choice`` says which and why. Equally many for two faces: ``error``, faces are never
    averaged together.
    ``mediapipe``: :mod:`mer_eval.domain.face` on ``sample.frame_image()`` (peak-frame image, else the image), the
    same rule on its one frame (its ``_c`` is ``_r >= 1.0``); no face -> ``not_applicable``.
    ``self``: the numbers the text was generated from: the sample's own CSV (rule as ``openface``), else
    ``top_aus_intensities`` (a listed AU is detected when its value >= ``intensity_threshold``: the same
    intensity rule as everywhere, so an AU MER-Factory listed at 0.85, above its own 0.8 cut, but claimed
    in the text counts against precision at the default 1.0).
    ``auto``: an independent OpenFace CSV -> MediaPipe on the frame image -> ``self``.

Independence
    MER-Factory writes the AU text from the sample's own OpenFace CSV, so checking the text against that CSV
    measures faithfulness to the input, not correctness. :func:`provenance` takes what mer-eval's generator
    recorded about the AU source of the annotation from ``sample.provenance.au_source`` (discovery reads it
    from ``mer_eval_meta.json``'s ``au_source`` and the stage files ``<id>_au.json`` / ``<id>_peaks.json``,
    :mod:`mer_eval.domain.records`). A CSV is *self* when (1) a recorded AU file is this CSV
    (same path, same bytes, or - for a moved run whose recorded path is gone - the same name); a recorded
    file that is another file makes it independent; else (2) a recorded backend (``openface``, ``mediapipe``,
    ...) and the CSV sits in the sample folder as ``<id>.csv`` (what the generator wrote); a non-OpenFace
    backend with a CSV elsewhere is independent; else (3) the CSV is in MER-Factory's layout ``<id>/<id>.csv``
    of a MER-Factory sample; else (4) the annotation's ``top_aus_intensities`` equal this CSV's values at
    ``peak_frame`` (within 0.006). MediaPipe on the frame is *self* when the recorded backend is
    ``mediapipe`` (same model, same frame). ``auto`` skips non-independent sources while an independent one
    is left and says so in ``skipped_sources``. Every result carries ``details.au_source`` (``openface`` |
    ``mediapipe`` | ``self``), ``details.self_reason`` and ``params.au_source``; composites can choose to
    ignore ``self``.

Measured AUs
    Only AUs the source measured are compared: for a CSV, those with an ``AUxx_r`` column, or an ``AUxx_c``
    column when ``use_presence`` (so AU28, ``_c`` only, needs both); for MediaPipe, its ``_r`` set plus its
    ``_c`` set when ``use_presence``; for ``top_aus_intensities``, OpenFace's ``_r`` set (AU28 cannot be
    listed). A claimed AU outside that set is not a false positive - nothing says the face does not show it -
    and is listed in ``unmeasured_claims`` with the reason per AU in ``unmeasured_reasons``.

Outputs, over M the AUs the source measured (at most OpenFace's 18), with C the claimed present AUs in M and
D the detected ones, TP = |C & D|:
    ``au_pr`` = TP / |C| (not_applicable when the text claims no AU, or claims only unmeasured ones),
    ``au_re`` = TP / |D| (not_applicable when nothing is detected), ``au_f1`` = 2 TP / (|C| + |D|)
    (not_applicable when both are empty). Claims with nothing detected give precision 0 and F1 0: a real
    measurement of claims the face does not show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Any

import numpy as np

from pydantic import Field

from mer_eval.domain.au_claims import UNIVERSE, Claims, Mention, claims_of, extract_claims  # noqa: F401
from mer_eval.domain.facs import OPENFACE_R_AUS, au_code
from mer_eval.domain.emotion_text import AU_TYPES
from mer_eval.domain.records import au_source_of

from mer_eval.metric import Metric, MetricParams, ModelUnavailable, OutputSpec
from mer_eval.schema import MetricResult, ModelRef, Sample, Status

CJK_MAX = 0.3  # texts with a larger share of CJK characters are not read for claims


# ---- detections -----------------------------------------------------------------------------------

class _Skip(Exception):
    """This source cannot serve the sample; ``status`` says how to report it if nothing else can."""

    def __init__(self, status: Status, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Detection:
    au_source: str  # openface | mediapipe | self
    detected: set[str]
    intensities: dict[str, float]  # AU -> mean _r used (or the MediaPipe intensity / listed value)
    presence: dict[str, float]  # AU -> mean _c used
    source_file: str | None
    how: str  # which reader: openface-csv | mediapipe | top_aus_intensities
    frames: list[int] = field(default_factory=list)
    peak_frame: int | None = None
    peak_from: str | None = None
    model: ModelRef | None = None
    self_why: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # the AUs the source measured (and so can say are absent); every other UNIVERSE AU -> why not
    measured: set[str] = field(default_factory=lambda: set(UNIVERSE))
    unmeasured: dict[str, str] = field(default_factory=dict)


def _same_file(a: Path, b: Path) -> bool:
    """Same path, or same bytes. A named file that no longer exists (a moved run) matches by name."""
    from mer_eval.cache import file_sha256

    try:
        if not a.exists():
            return a.name == b.name
        if a.resolve() == b.resolve():
            return True
        if a.is_file() and b.is_file() and a.stat().st_size == b.stat().st_size:
            return file_sha256(a) == file_sha256(b)
    except OSError:
        return False
    return False


@dataclass
class Provenance:
    """Where the annotation's AU text came from, as far as the sample folder records it."""

    backend: str | None = None  # openface | mediapipe | pyfeat | ...
    files: list[Path] = field(default_factory=list)  # AU CSVs the text was generated from
    where: str | None = None  # the file that said so


def provenance(sample: Sample) -> Provenance:
    """What the generator recorded about the annotation's AU source (``sample.provenance.au_source``, read by
    discovery from ``mer_eval_meta.json`` and the au / peaks stage files:
    :func:`mer_eval.domain.records.read_au_source`).
    A record that could not be read is an error, never a guess."""
    rec = au_source_of(sample)
    if rec.error is not None:
        raise _Skip(Status.error, rec.error)
    return Provenance(backend=rec.backend, files=list(rec.csv), where=rec.recorded_in)


def csv_is_self(sample: Sample, csv: Path, pv: Provenance | None = None) -> tuple[bool, str]:
    """Whether the annotation's AU text was generated from ``csv`` (see Independence above)."""
    csv = Path(csv)
    pv = pv if pv is not None else provenance(sample)
    folder = Path(sample.folder) if sample.folder is not None else None
    in_layout = folder is not None and csv.parent.resolve() == folder.resolve() and csv.stem in (
        folder.name, sample.id)
    if pv.files:
        for f in pv.files:
            if _same_file(f, csv):
                return True, f"{pv.where} names {f.name} as the AU source of the annotation: the same file"
        return False, (f"{pv.where} names {', '.join(f.name for f in pv.files)} "
                       f"({pv.backend or 'unknown backend'}) as the AU source; {csv.name} is another file")
    if pv.backend:
        if in_layout:
            return True, f"{pv.where}: the annotation's AUs came from {pv.backend}, written to {csv.name}"
        if pv.backend != "openface":
            return False, f"{pv.where}: the annotation's AUs came from {pv.backend}, not this OpenFace CSV"
    if sample.source.startswith("mer-factory") and in_layout:
        return True, f"MER-Factory layout {folder.name}/{csv.name}: the AU text was written from it"
    ann = sample.annotation
    if ann.top_aus_intensities and ann.peak_frame is not None:
        from mer_eval.domain.openface import OpenFaceError, read_openface_csv

        try:
            of = read_openface_csv(csv)
        except (OpenFaceError, OSError):
            return False, "CSV unreadable; not compared"
        idx = of.row_index_of_frame(ann.peak_frame)
        if idx is not None:
            vals = {au_code(c): v for c, v in of.intensities(idx).items()}
            listed = {au_code(k): float(v) for k, v in ann.top_aus_intensities.items() if au_code(k)}
            same = bool(listed) and all(k in vals and abs(vals[k] - v) <= 0.006 for k, v in listed.items())
            if same:
                return True, (f"the annotation's top_aus_intensities equal {csv.name} at frame "
                              f"{ann.peak_frame}: the text was written from these numbers")
    return False, "no sign the annotation was generated from this CSV"


def _au_rule(intensity: dict[str, float], presence: dict[str, float], p: AUF1Params) -> set[str]:
    out = set()
    for au in UNIVERSE:
        c = presence.get(au)
        r = intensity.get(au)
        if (p.use_presence and c is not None and c >= 0.5) or (r is not None and r >= p.intensity_threshold):
            out.add(au)
    return out


def _measured(r_aus: set[str], c_aus: set[str], p: AUF1Params, where: str) -> tuple[set[str], dict[str, str]]:
    """The AUs ``_au_rule`` can find present or absent from a source with these ``_r`` / ``_c`` AUs, and why
    each other AU of the universe is not measured."""
    measured = set(r_aus) | (set(c_aus) if p.use_presence else set())
    why = {}
    for au in UNIVERSE:
        if au in measured:
            continue
        if au in c_aus:
            why[au] = f"{where} has AU{au} as presence (_c) only, and use_presence is off"
        else:
            why[au] = f"no AU{au}_r or AU{au}_c column in {where}"
    return measured, why


def detect_openface(sample: Sample, csv: Path, p: AUF1Params, au_source: str) -> Detection:
    from mer_eval.domain.openface import MultiFaceError, OpenFaceError, overall_intensity, read_openface_csv

    try:
        of = read_openface_csv(csv, min_confidence=p.confidence)
    except MultiFaceError as e:
        raise _Skip(Status.error, f"OpenFace CSV {Path(csv).name} not scored: {e}") from None
    except (OpenFaceError, OSError) as e:
        raise _Skip(Status.error, f"OpenFace CSV {Path(csv).name} unreadable: {e}") from None
    valid = of.valid_mask(p.confidence)
    if of.n == 0 or not valid.any():
        raise _Skip(Status.not_applicable, f"{Path(csv).name}: no frame with success=1 and confidence >= "
                                           f"{p.confidence} ({of.n} frames)")
    frames = of.data["frame"].astype(int)
    ann = sample.annotation
    peak, peak_from = None, None
    if ann.peak_frame is not None:
        if of.row_index_of_frame(ann.peak_frame) is not None:
            peak, peak_from = int(ann.peak_frame), "annotation.peak_frame"
        else:
            peak_from = f"annotation.peak_frame {ann.peak_frame} not in the CSV; "
    if peak is None and ann.peak_timestamp is not None and "timestamp" in of.data:
        i = int(np.argmin(np.abs(of.data["timestamp"] - float(ann.peak_timestamp))))
        peak, peak_from = int(frames[i]), (peak_from or "") + "nearest to annotation.peak_timestamp"
    if peak is None:
        oi = np.where(valid, overall_intensity(of), -np.inf)
        i = int(np.argmax(oi))
        peak, peak_from = int(frames[i]), (peak_from or "") + "max overall intensity among valid frames"
    win = valid & (np.abs(frames - peak) <= p.window_frames)
    if not win.any():
        raise _Skip(Status.not_applicable,
                    f"{Path(csv).name}: no frame with success=1 and confidence >= {p.confidence} within "
                    f"+-{p.window_frames} of peak frame {peak}")
    inten = {c[2:4]: float(np.mean(of.data[c][win])) for c in of.au_r if c[2:4] in UNIVERSE}
    pres = {c[2:4]: float(np.mean(of.data[c][win])) for c in of.au_c if c[2:4] in UNIVERSE}
    measured, why = _measured(set(inten), set(pres), p, Path(csv).name)
    extra: dict[str, Any] = {}
    if of.face_reason is not None:  # several faces: which one was scored
        extra["face_choice"] = {"face_id": of.face_id, "frames": {str(k): v for k, v in of.face_frames.items()},
                                "reason": of.face_reason}
    return Detection(au_source=au_source, detected=_au_rule(inten, pres, p), intensities=inten, presence=pres,
                     source_file=str(csv), how="openface-csv", frames=[int(f) for f in frames[win]],
                     peak_frame=peak, peak_from=peak_from, measured=measured, unmeasured=why, extra=extra)


def detect_mediapipe(sample: Sample, p: AUF1Params, config: Any, timed=None) -> Detection:
    from mer_eval.domain import face

    img = sample.frame_image()
    if img is None:
        raise _Skip(Status.not_applicable, "no peak-frame image or image for MediaPipe")
    try:
        r = timed(face.detect_one, img, config) if timed else face.detect_one(img, config)
    except ModelUnavailable as e:
        raise _Skip(Status.unavailable, f"MediaPipe face-landmarker: {e}") from None
    res = face.resolution(config)
    ref = ModelRef(id=f"mediapipe-face-landmarker ({res.id})", sha256=res.sha256,
                   path=str(res.path) if res.path else None, source=res.source)
    if r is None:
        raise _Skip(Status.not_applicable, f"no face detected in {Path(img).name} (MediaPipe FaceLandmarker)")
    inten = {c[2:4]: v for c, v in r.aus.items()}
    pres = {c[2:4]: v for c, v in r.presence.items()}
    measured, why = _measured({a for a in inten if a in UNIVERSE}, {a for a in pres if a in UNIVERSE}, p,
                              "MediaPipe's AU mapping")
    return Detection(au_source="mediapipe", detected=_au_rule(inten, pres, p), intensities=inten,
                     presence=pres, source_file=str(img), how="mediapipe", model=ref,
                     extra={"n_faces": r.n_faces, "bbox": list(r.bbox)}, measured=measured, unmeasured=why)


def detect_top_aus(sample: Sample, p: AUF1Params) -> Detection:
    top = sample.annotation.top_aus_intensities
    inten = {}
    for k, v in top.items():
        code = au_code(k)
        if code in UNIVERSE:
            inten[code] = float(v)
    src = sample.annotation_files.get("mer") or next(iter(sample.annotation_files.values()), None)
    # an unlisted _r AU was measured below MER-Factory's cut; a _c-only AU (AU28) can never be listed
    measured = set(OPENFACE_R_AUS) & set(UNIVERSE)
    why = {au: f"top_aus_intensities list _r intensities; AU{au} has no _r in OpenFace"
           for au in UNIVERSE if au not in measured}
    return Detection(au_source="self", detected=_au_rule(inten, {}, p), intensities=inten, presence={},
                     source_file=str(src) if src else None, how="top_aus_intensities",
                     peak_frame=sample.annotation.peak_frame, peak_from="annotation.peak_frame",
                     self_why="top_aus_intensities are the numbers the AU text was written from",
                     measured=measured, unmeasured=why)


# ---- the metric -----------------------------------------------------------------------------------


class AUF1Params(MetricParams):
    source: Literal["auto", "openface", "mediapipe", "self"] = "auto"
    confidence: float = Field(0.8, ge=0, le=1)
    intensity_threshold: float = Field(1.0, ge=0, le=5)
    use_presence: bool = True
    window_frames: int = Field(3, ge=0)  # +- frames around the peak
    texts: list[str] = Field(  # annotation fields whose AU claims are checked
        default_factory=lambda: ["visual_expression", "llm_au_description", "final_summary"]
    )


class AUF1(Metric):
    Params = AUF1Params
    model_uses = "face-landmarker (when no OpenFace CSV)"
    name = "au_f1"
    order = 80
    # 1.1: negation keeps its scope over a list of AUs ("no AU04, AU07 or AU23"); "missing"
    # 1.2: claims of AUs the source did not measure are left out (unmeasured_claims), not false positives;
    #      a multi-face OpenFace CSV is read as one face (face_choice), never averaged across faces
    # 1.3: no AU-describing text on a mer / au sample whose source detects AUs is abstained (was not_applicable:
    #      a gate skipped it and it beat a text that claimed the wrong AUs)
    version = "1.3"
    outputs = (
        OutputSpec("au_pr", True, (0.0, 1.0), "|claimed & detected| / |claimed| over the AUs the source measured"),
        OutputSpec("au_re", True, (0.0, 1.0), "|claimed & detected| / |detected|", primary=False),
        OutputSpec("au_f1", True, (0.0, 1.0), "2 |claimed & detected| / (|claimed| + |detected|)"),
    )
    requires = "an AU-describing text, and an OpenFace CSV, a face image, or top_aus_intensities"
    description = "AUs the text claims (names, synonyms, codes; negation-aware) vs AUs detected at the peak"

    # --- inputs
    def _texts(self, s: Sample) -> dict[str, str]:
        return self._texts_and_skipped(s)[0]

    def _texts_and_skipped(self, s: Sample) -> tuple[dict[str, str], dict[str, str]]:
        """The configured AU texts present; texts mostly in CJK script are skipped (claims are read with
        English FACS vocabulary only, so a Chinese description would look like "claims nothing")."""
        from mer_eval.domain.text import cjk_ratio

        out, skipped = {}, {}
        for f in self.cfg.texts:
            v = getattr(s.annotation, f, None)
            if isinstance(v, str) and v.strip():
                r = cjk_ratio(v)
                if r > CJK_MAX:
                    skipped[f] = f"{r:.0%} CJK characters; AU claims are read from English text only"
                else:
                    out[f] = v
        return out, skipped

    def missing_inputs(self, sample: Sample) -> str | None:
        texts, skipped = self._texts_and_skipped(sample)
        if not texts:
            if skipped:
                return "; ".join(f"{k}: {v}" for k, v in skipped.items())
            stype = getattr(sample.type, "value", sample.type)
            if stype not in AU_TYPES:
                return f"no AU-describing text ({', '.join(self.cfg.texts)} all empty)"
            # a mer / au annotation promises an AU analysis: abstained where the source detects AUs (_score)
        src = self.cfg.source
        has_csv = sample.openface_csv is not None
        has_img = sample.frame_image() is not None
        has_top = bool(sample.annotation.top_aus_intensities)
        if src == "openface" and not has_csv:
            return "au_f1.source=openface but the sample has no OpenFace CSV"
        if src == "mediapipe" and not has_img:
            return "au_f1.source=mediapipe but the sample has no peak-frame image or image"
        if src == "self" and not (has_csv or has_top):
            return "au_f1.source=self but the sample has no OpenFace CSV or top_aus_intensities"
        if src == "auto" and not (has_csv or has_img or has_top):
            return "no AU source: no OpenFace CSV, no peak-frame image or image, no top_aus_intensities"
        return None

    def load(self) -> None:
        if self.cfg.source == "mediapipe":
            from mer_eval.domain import face

            face.get_landmarker(self.ctx.config)  # raises ModelUnavailable with where it looked

    def model_ref(self) -> ModelRef | None:
        if self.cfg.source not in ("auto", "mediapipe"):
            return None
        from mer_eval.domain import face

        res = face.resolution(self.ctx.config)
        if not res.available:
            return None
        return ModelRef(id=f"mediapipe-face-landmarker ({res.id})", sha256=res.sha256,
                        path=str(res.path) if res.path else None, source=res.source)

    def cache_key_inputs(self, sample: Sample) -> dict[str, Any] | None:
        inputs: dict[str, Any] = {"texts": self._texts(sample), "peak_frame": sample.annotation.peak_frame,
                                  "peak_timestamp": sample.annotation.peak_timestamp,
                                  "top_aus": sample.annotation.top_aus_intensities, "source": sample.source}
        if sample.openface_csv is not None:
            inputs["csv"] = Path(sample.openface_csv)
            try:
                inputs["csv_self"] = csv_is_self(sample, Path(sample.openface_csv))[0]
            except _Skip:
                return None
        img = sample.frame_image()
        if img is not None:
            inputs["image"] = Path(img)
        for f in au_source_of(sample).files:  # the generator's records decide self / independent
            inputs[f"provenance:{f.name}"] = f
        return inputs

    # --- scoring
    def _detect(self, s: Sample) -> tuple[Detection, dict[str, str]]:
        src = self.cfg.source
        skipped: dict[str, str] = {}
        failures: list[_Skip] = []
        pv = provenance(s)
        csv = Path(s.openface_csv) if s.openface_csv is not None else None
        csv_self: tuple[bool, str] | None = csv_is_self(s, csv, pv) if csv is not None else None
        # MediaPipe on the frame is the annotation's own source when our generator used MediaPipe too
        mp_self = (f"{pv.where}: the annotation's AUs came from MediaPipe FaceLandmarker too"
                   if pv.backend == "mediapipe" else None)

        def attempt(kind: str, fn):
            try:
                return fn()
            except _Skip as e:
                skipped[kind] = e.reason
                failures.append(e)
                return None

        def mediapipe() -> Detection:
            d = detect_mediapipe(s, self.cfg, self.ctx.config, self.timed)
            if mp_self:
                d.au_source, d.self_why = "self", mp_self
            return d

        det: Detection | None = None
        if src == "openface":
            assert csv is not None and csv_self is not None
            det = attempt("openface", lambda: detect_openface(s, csv, self.cfg,
                                                              "self" if csv_self[0] else "openface"))
        elif src == "mediapipe":
            det = attempt("mediapipe", mediapipe)
        else:
            if src == "auto":
                if csv is not None and csv_self is not None and not csv_self[0]:
                    det = attempt("openface", lambda: detect_openface(s, csv, self.cfg, "openface"))
                elif csv is not None and csv_self is not None:
                    skipped["openface"] = f"not independent: {csv_self[1]}"
                if det is None and s.frame_image() is not None:
                    if mp_self:
                        skipped["mediapipe"] = f"not independent: {mp_self}"
                    else:
                        det = attempt("mediapipe", mediapipe)
            if det is None:
                if csv is not None and csv_self is not None and csv_self[0]:
                    det = attempt("self", lambda: detect_openface(s, csv, self.cfg, "self"))
                elif src == "self" and csv is not None and csv_self is not None:
                    skipped["self"] = f"{csv.name} is not the annotation's own AU source ({csv_self[1]})"
                if det is None and mp_self and s.frame_image() is not None:
                    det = attempt("self", mediapipe)
                if det is None and s.annotation.top_aus_intensities:
                    det = detect_top_aus(s, self.cfg)
        if det is None:
            reason = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "no AU source"
            statuses = {f.status for f in failures}
            status = (Status.error if Status.error in statuses else
                      Status.unavailable if Status.unavailable in statuses else Status.not_applicable)
            raise _Skip(status, reason)
        if det.au_source == "self" and det.self_why is None and csv_self is not None:
            det.self_why = csv_self[1]
        if det.au_source == "openface" and csv_self is not None:
            det.extra["independence"] = csv_self[1]
        return det, skipped

    def _score(self, s: Sample) -> list[MetricResult]:
        texts, skipped_texts = self._texts_and_skipped(s)
        claims, per_field = claims_of(texts)
        try:
            det, skipped = self._detect(s)
        except _Skip as e:
            return self.not_ok(s.id, e.status, e.reason,
                               params={**self.public_params(), "au_source": None},
                               details={"au_source": None, "claimed": sorted(claims.present),
                                        "negated": sorted(claims.absent), "texts": list(texts)})
        M = det.measured
        unmeasured = claims.present - M  # nothing says the face does not show these: not scored
        C, D = claims.present & M, det.detected & M
        if not texts and not skipped_texts and D:  # (missing_inputs let no text through only for AU_TYPES)
            stype = getattr(s.type, "value", s.type)
            why = (f"a {stype} annotation promises an AU analysis; {', '.join(self.cfg.texts)} are all empty while "
                   f"{det.how} detected {', '.join(f'AU{au}' for au in sorted(D))}")
            return self.not_ok(s.id, Status.abstained, why, params={**self.public_params(), "au_source": det.au_source},
                               details={"au_source": det.au_source, "source": det.how, "detected": sorted(D),
                                        "texts": []}, model=det.model)
        tp, fp, fn = C & D, C - D, D - C
        details = {
            "au_source": det.au_source,
            "independent": det.au_source != "self",
            "self_reason": det.self_why if det.au_source == "self" else None,
            "source": det.how,
            "source_file": det.source_file,
            "texts": list(texts),
            "skipped_texts": skipped_texts,
            "claimed": sorted(claims.present),
            "claimed_by_text": per_field,
            "measured": sorted(M),
            "unmeasured_claims": sorted(unmeasured),
            "unmeasured_reasons": {au: det.unmeasured.get(au, "not measured") for au in sorted(unmeasured)},
            "negated": sorted(claims.absent),
            "conflicting": sorted(claims.conflicting),
            "outside_universe": sorted(claims.outside_universe),
            "negated_but_detected": sorted(claims.absent & D),
            "detected": sorted(D),
            "tp": sorted(tp), "fp": sorted(fp), "fn": sorted(fn),
            "intensities": {k: round(v, 3) for k, v in sorted(det.intensities.items())},
            "presence": {k: round(v, 3) for k, v in sorted(det.presence.items())},
            "peak_frame": det.peak_frame,
            "peak_from": det.peak_from,
            "frames": det.frames,
            "skipped_sources": skipped,
            "mentions": [{"au": m.au, "text": m.text, "field": m.field, "negated": m.negated}
                         for m in claims.mentions][:60],
            **det.extra,
        }
        params = {**self.public_params(), "au_source": det.au_source}
        from mer_eval.evidence import origin
        from mer_eval.schema import Evidence, InputRef, Relation

        compared = [InputRef(name=f, producer=origin(s, f).producer) for f in texts] + [
            InputRef(name=det.how, producer="detector" if det.au_source != "self" else "annotation")]
        if det.au_source == "self":
            evidence = Evidence(relation=Relation.self_check, independent=False, compared=compared,
                                reason=det.self_why or "the AUs the text was generated from")
        else:
            evidence = Evidence(relation=Relation.independent, independent=True, compared=compared,
                                reason=det.extra.get("independence") or f"{det.how}: a detector the text's writer "
                                       "did not use")
        kw = {"params": params, "details": details, "model": det.model, "evidence": evidence}
        out: list[MetricResult] = []
        not_measured = ("; ".join(f"AU{au}: {details['unmeasured_reasons'][au]}" for au in sorted(unmeasured))
                        if unmeasured else "")
        if C:
            out.append(self.ok(s.id, "au_pr", len(tp) / len(C), **kw))
        elif unmeasured:
            out += self.not_ok(s.id, Status.not_applicable,
                               f"the text claims only AUs the source ({det.how}) did not measure ({not_measured}): "
                               "precision undefined", ["au_pr"], params=params, details=details, evidence=evidence)
        else:
            out += self.not_ok(s.id, Status.not_applicable, "the text claims no AU: precision undefined",
                               ["au_pr"], params=params, details=details, evidence=evidence)
        if D:
            out.append(self.ok(s.id, "au_re", len(tp) / len(D), **kw))
        else:
            out += self.not_ok(s.id, Status.not_applicable,
                               f"no AU detected ({det.au_source}): recall undefined", ["au_re"],
                               params=params, details=details)
        if C or D:
            out.append(self.ok(s.id, "au_f1", 2 * len(tp) / (len(C) + len(D)), **kw))
        elif unmeasured:
            out += self.not_ok(s.id, Status.not_applicable,
                               f"the text claims only AUs the source ({det.how}) did not measure ({not_measured}) "
                               f"and none detected ({det.au_source}): F1 undefined", ["au_f1"],
                               params=params, details=details)
        else:
            out += self.not_ok(s.id, Status.not_applicable,
                               f"no AU claimed and none detected ({det.au_source}): F1 undefined", ["au_f1"],
                               params=params, details=details)
        return out

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        return {s.id: self._score(s) for s in samples}
