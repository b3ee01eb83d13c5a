"""Human reference reasonings (EMER-style) for samples: read from a file, matched to samples.

Formats: EMER's CSV (``names``, ``emotions``, ``subtitles``, ``reasons``: ``gt-eng.csv``), any CSV with an id
column (``sample_id`` / ``id`` / ``name`` / ``names``) and a ``reference_reasoning`` (or ``reasons`` /
``reason``) column, optionally ``emotion`` / ``emotions`` / ``label``; or a JSONL manifest whose rows carry
``id`` and ``reference_reasoning``. A row matches a sample by id, else by the stem of the sample's media
file, case-insensitively. Used by the ``reference_reasoning`` metric and by ``mer-eval judge``.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any, Optional

ID_COLUMNS = ("sample_id", "id", "names", "name")
TEXT_COLUMNS = ("reference_reasoning", "reasons", "reason")
EMOTION_COLUMNS = ("emotions", "emotion", "label")


class Reference:
    __slots__ = ("text", "emotion", "row", "source")

    def __init__(self, text: str, emotion: Optional[str], row: int, source: str):
        self.text, self.emotion, self.row, self.source = text, emotion, row, source

    @property
    def sha256(self) -> str:
        """Hash of the reference text and emotion (a judge verdict is valid only for the reference it read)."""
        return hashlib.sha256(json.dumps([self.text, self.emotion]).encode("utf-8")).hexdigest()


def _pick(row: dict[str, Any], names: tuple[str, ...]) -> Optional[str]:
    low = {str(k).strip().lower().lstrip("\ufeff"): v for k, v in row.items() if k is not None}
    for n in names:
        v = low.get(n)
        if v is not None and str(v).strip():
            return str(v).strip()
    return None


def read_references(path: Path) -> dict[str, Reference]:
    """``{lower-case id: Reference}`` from an EMER / id+reasoning CSV or a JSONL manifest. Raises
    ``ValueError`` naming the file, the line and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"references file {path}: not found")
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"references file {path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for i, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"references file {path}:{i}: not JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"references file {path}:{i}: expected a JSON object")
            rows.append((i, obj))
    else:
        reader = csv.DictReader(raw.splitlines())
        cols = {str(c).strip().lower() for c in (reader.fieldnames or [])}
        if not cols & set(ID_COLUMNS) or not cols & set(TEXT_COLUMNS):
            raise ValueError(f"references file {path}: needs an id column ({' / '.join(ID_COLUMNS)}) and a "
                             f"reasoning column ({' / '.join(TEXT_COLUMNS)}); it has: "
                             f"{', '.join(reader.fieldnames or []) or 'no header'}")
        rows = [(i, r) for i, r in enumerate(reader, 2)]
    out: dict[str, Reference] = {}
    for i, r in rows:
        sid, text = _pick(r, ID_COLUMNS), _pick(r, TEXT_COLUMNS)
        if sid is None or text is None:
            continue  # a row without a reasoning is no reference (a manifest row may have none)
        key = sid.lower()
        if key in out:
            raise ValueError(f"references file {path}:{i}: id {sid!r} appears twice (first on line {out[key].row})")
        out[key] = Reference(text, _pick(r, EMOTION_COLUMNS), i, str(path))
    return out




def reference_for(refs: dict[str, Reference], sample: Any) -> Optional[Reference]:
    """The reference of ``sample`` (by id, else by its video / image / audio file's stem), or None."""
    keys = [sample.id] + [Path(p).stem for p in (sample.video, sample.image, sample.audio) if p is not None]
    for k in keys:
        r = refs.get(k.lower())
        if r is not None:
            return r
    return None
