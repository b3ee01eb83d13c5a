"""OpenFace 2.x FeatureExtraction CSVs, as they really are.

Headers carry leading spaces (`` AU01_r``), ``face_id`` may be absent, frames are numbered from 1, and
files can end in a cut-off row. :func:`read_openface_csv` parses what is sound and lists, in ``notes``,
every row it dropped and why.

Several faces (OpenFace's multi-face tracker writes one row per face per frame, ``face_id`` telling them
apart) are never mixed: by default the reader keeps the one face with the most tracked frames
(``success == 1`` and ``confidence >= min_confidence``) and says so in ``notes``; when two faces have
equally many, which one is the annotated person cannot be told and it raises :class:`OpenFaceError`.
A CSV with one ``face_id`` (or none) is read as it is.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from mer_eval.domain.facs import OPENFACE_R_AUS


class OpenFaceError(ValueError):
    pass


class MultiFaceError(OpenFaceError):
    """The file is sound but holds several faces and which one to use cannot be told."""


FACE_MIN_CONFIDENCE = 0.8  # a frame counts as tracked for choosing a face when success == 1 and this confidence


@dataclass
class OpenFaceData:
    path: Path
    columns: list[str]
    data: dict[str, np.ndarray]  # column -> float array, one entry per kept row
    notes: list[str] = field(default_factory=list)
    rows_read: int = 0
    face_ids: list[int] = field(default_factory=list)  # the face ids in the file (kept rows); [] without face_id
    face_id: Optional[int] = None  # the face kept, when the file has a face_id column and one face was kept
    face_frames: dict[int, int] = field(default_factory=dict)  # multi-face files: face id -> tracked frames
    face_reason: Optional[str] = None  # multi-face files: which face was kept and why

    @property
    def n(self) -> int:
        return len(self.data["frame"]) if "frame" in self.data else 0

    @property
    def au_r(self) -> list[str]:
        return [c for c in self.columns if c.startswith("AU") and c.endswith("_r")]

    @property
    def au_c(self) -> list[str]:
        return [c for c in self.columns if c.startswith("AU") and c.endswith("_c")]

    def column(self, name: str) -> Optional[np.ndarray]:
        return self.data.get(name)

    def valid_mask(self, min_confidence: float = 0.0) -> np.ndarray:
        """Frames where a face was tracked (``success == 1``) with at least ``min_confidence``."""
        m = np.ones(self.n, dtype=bool)
        if "success" in self.data:
            m &= self.data["success"] >= 0.5
        if "confidence" in self.data:
            m &= self.data["confidence"] >= min_confidence
        return m

    def row_index_of_frame(self, frame: int) -> Optional[int]:
        """Index of OpenFace frame number ``frame`` (1-based, as in the CSV)."""
        frames = self.data.get("frame")
        if frames is None:
            return None
        hits = np.nonzero(frames.astype(int) == int(frame))[0]
        return int(hits[0]) if len(hits) else None

    def intensities(self, idx: int) -> dict[str, float]:
        return {c: float(self.data[c][idx]) for c in self.au_r}

    def presences(self, idx: int) -> dict[str, float]:
        return {c: float(self.data[c][idx]) for c in self.au_c}


def read_openface_csv(path: Path, face: Union[str, int] = "best",
                      min_confidence: float = FACE_MIN_CONFIDENCE) -> OpenFaceData:
    """Read an OpenFace CSV. ``face``: ``"best"`` keeps, of several faces, the one with the most frames with
    ``success == 1`` and ``confidence >= min_confidence`` (a tie is an :class:`OpenFaceError`); an int keeps
    that ``face_id``; ``"all"`` keeps every row, faces mixed."""
    if not (face in ("best", "all") or (isinstance(face, int) and not isinstance(face, bool))):
        raise ValueError(f"face must be 'best', 'all' or a face_id, not {face!r}")
    path = Path(path)
    with path.open("r", encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise OpenFaceError(f"{path.name}: empty file") from None
        cols = [h.strip() for h in header]
        if "frame" not in cols:
            raise OpenFaceError(f"{path.name}: no 'frame' column; not an OpenFace CSV (columns: {cols[:6]}...)")
        if not any(c.startswith("AU") and c.endswith("_r") for c in cols):
            raise OpenFaceError(f"{path.name}: no AUxx_r columns; not an OpenFace AU CSV")
        keep: list[list[float]] = []
        notes: list[str] = []
        rows_read = 0
        for lineno, row in enumerate(reader, start=2):
            rows_read += 1
            if not row or all(not x.strip() for x in row):
                continue
            if len(row) != len(cols):
                notes.append(
                    f"line {lineno}: dropped, {len(row)} of {len(cols)} fields (truncated row)"
                )
                continue
            try:
                vals = [float(x) for x in row]
            except ValueError as e:
                notes.append(f"line {lineno}: dropped, non-numeric value ({e})")
                continue
            if any(math.isnan(v) for v in vals):
                notes.append(f"line {lineno}: dropped, NaN value")
                continue
            keep.append(vals)
    arr = np.asarray(keep, dtype=float).reshape(len(keep), len(cols))
    data = {c: arr[:, i] for i, c in enumerate(cols)}
    of = OpenFaceData(path=path, columns=cols, data=data, notes=notes, rows_read=rows_read)
    if "face_id" in data:
        _one_face(of, face, min_confidence)
    return of


def _face_label(v: float) -> int:
    return int(v) if float(v).is_integer() else v  # type: ignore[return-value]


def _one_face(of: OpenFaceData, face: Union[str, int], min_confidence: float) -> None:
    """Cut ``of`` to one face (see :func:`read_openface_csv`); a file with one face id is left as it is."""
    fid = of.data["face_id"]
    ids = [_face_label(v) for v in np.unique(fid)]
    of.face_ids = ids
    if isinstance(face, int) and face not in ids:
        raise OpenFaceError(f"{of.path.name}: no face_id {face} (faces: {', '.join(map(str, ids)) or 'none'})")
    if len(ids) == 1:
        of.face_id = ids[0]
    if len(ids) <= 1 or face == "all":
        return
    name = of.path.name
    valid = of.valid_mask(min_confidence)
    counts = {i: int(np.sum(valid & (fid == i))) for i in ids}
    of.face_frames = counts
    conds = (["success=1"] if "success" in of.data else []) + (
        [f"confidence >= {min_confidence}"] if "confidence" in of.data else [])
    tracked = f"frames with {' and '.join(conds)}" if conds else "rows"
    listing = ", ".join(f"face {i}: {n}" for i, n in counts.items())
    if face == "best":
        ranked = sorted(counts, key=lambda i: -counts[i])
        best = ranked[0]
        tied = [i for i in ranked if counts[i] == counts[best]]
        if len(tied) > 1:
            raise MultiFaceError(
                f"{name}: {len(ids)} faces (face_id {', '.join(map(str, ids))}); faces "
                f"{', '.join(map(str, tied))} each have {counts[best]} {tracked}: cannot tell which face is the "
                f"annotated person, and mixing faces would average different people")
        reason = (f"{len(ids)} faces in {name} ({tracked}: {listing}); kept face {best}, the one with the "
                  f"most frames tracked; the other faces' rows dropped")
    else:
        best = face
        reason = f"{len(ids)} faces in {name} ({tracked}: {listing}); kept face {best}, as asked"
    keep = fid == best
    dropped = int(np.sum(~keep))
    of.data = {c: v[keep] for c, v in of.data.items()}
    of.face_id = best
    of.face_reason = reason
    of.notes.append(f"face_id: {reason} ({dropped} rows)")


def overall_intensity(of: OpenFaceData) -> np.ndarray:
    """MER-Factory's per-frame overall intensity: the sum of all ``_r`` columns."""
    cols = [c for c in of.au_r if c[2:4] in OPENFACE_R_AUS]
    if not cols:
        return np.zeros(of.n)
    return np.sum([of.data[c] for c in cols], axis=0)
