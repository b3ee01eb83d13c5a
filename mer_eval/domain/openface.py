"""OpenFace 2.x FeatureExtraction CSVs, as they really are.

Headers carry leading spaces (`` AU01_r``), ``face_id`` may be absent, frames are numbered from 1, and
files can end in a cut-off row. :func:`read_openface_csv` parses what is sound and lists, in ``notes``,
every row it dropped and why.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from mer_eval.domain.facs import OPENFACE_R_AUS


class OpenFaceError(ValueError):
    pass


@dataclass
class OpenFaceData:
    path: Path
    columns: list[str]
    data: dict[str, np.ndarray]  # column -> float array, one entry per kept row
    notes: list[str] = field(default_factory=list)
    rows_read: int = 0

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


def read_openface_csv(path: Path) -> OpenFaceData:
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
    return OpenFaceData(path=path, columns=cols, data=data, notes=notes, rows_read=rows_read)


def overall_intensity(of: OpenFaceData) -> np.ndarray:
    """MER-Factory's per-frame overall intensity: the sum of all ``_r`` columns."""
    cols = [c for c in of.au_r if c[2:4] in OPENFACE_R_AUS]
    if not cols:
        return np.zeros(of.n)
    return np.sum([of.data[c] for c in cols], axis=0)
