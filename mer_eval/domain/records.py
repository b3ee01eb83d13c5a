"""mer-eval's generator records in a sample folder, as readers find them.

``generate`` writes, per sample folder, ``mer_eval_meta.json`` (:data:`META_NAME`) and one JSON per stage,
``<id>_<stage>.json`` (:func:`stage_record_name`; the au stage's ``<id>_au.json``, the audio stage's
``<id>_audio_features.json``, ...). The file names are known here only: the generator writes by them, and
discovery reads what metrics need from them into :class:`~mer_eval.schema.SampleProvenance`
(:func:`read_into`), so a metric asks the sample (:func:`au_source_of`, :func:`asr_of`), never the folder.
A :class:`~mer_eval.schema.Sample` built by hand (``provenance.records_read`` false) is read on demand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Optional

from mer_eval.schema import ASRRecord, AUSourceRecord, Sample

META_NAME = "mer_eval_meta.json"
AU_STAGES = ("au", "peaks")  # the stage records that name the AU source
ASR_STAGE = "audio_features"


def stage_record_name(sample_id: str, stage: str) -> str:
    """``<id>_<stage>.json``: the file a generator stage writes its outputs to."""
    return f"{sample_id}_{stage}.json"


def _ids(sample: Sample) -> list[str]:
    """The names a sample's records may carry: its id and its folder's name."""
    return list(dict.fromkeys([sample.id, Path(sample.folder).name])) if sample.folder is not None else []


def read_au_source(folder: Path, ids: Iterable[str], files: Optional[set[str]] = None) -> AUSourceRecord:
    """Read ``mer_eval_meta.json`` (``au_source``: a backend name, or a dict with ``backend``/``path``; or
    ``au_backend`` / ``au_csv``) and the stage files ``<id>_au.json`` (``au_source``, ``csv``) and
    ``<id>_peaks.json`` (``au_source``, ``au_csv``) for each id. A file that cannot be read is an ``error``
    (nothing else is then taken as known). ``files``: the names of the folder's files, when the caller has
    listed it (no file is then looked up one by one)."""
    folder = Path(folder)
    names = [META_NAME] + [stage_record_name(i, st) for i in ids for st in AU_STAGES]
    rec = AUSourceRecord(files=[folder / n for n in names if (n in files if files is not None
                                                              else (folder / n).is_file())])
    for f in rec.files:
        try:
            d: Any = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            return AUSourceRecord(files=rec.files, error=f"{f}: unreadable ({e})")
        d = d if isinstance(d, dict) else {}
        backend, paths = None, []
        for key in ("au_source", "au", "aus"):
            v = d.get(key)
            if isinstance(v, dict):
                backend = backend or v.get("backend") or v.get("source") or v.get("name")
                paths += [v.get(k) for k in ("path", "csv", "file")]
            elif isinstance(v, str):
                if v.lower().endswith(".csv") or "/" in v:
                    paths.append(v)
                else:
                    backend = backend or v
        backend = backend or d.get("au_backend")
        paths += [d.get(k) for k in ("au_csv", "csv")]
        paths = [x for x in paths if isinstance(x, str) and x]
        if backend or paths:
            rec.recorded_in = rec.recorded_in or f.name
            rec.backend = rec.backend or (str(backend).lower() if backend else None)
            for x in paths:
                q = Path(x)
                rec.csv.append(q if q.is_absolute() else folder / q)
    return rec


def read_asr(folder: Path, ids: Iterable[str], files: Optional[set[str]] = None) -> Optional[ASRRecord]:
    """The audio stage's ``<id>_audio_features.json`` (the first id that has one): the transcript it wrote
    (``outputs.transcript``, else ``outputs.asr.text``) and the ASR model (``outputs.asr.model``: id,
    sha256). None when there is none, or it cannot be read, or it has no ``outputs``."""
    for i in ids:
        p = Path(folder) / stage_record_name(i, ASR_STAGE)
        if not (p.name in files if files is not None else p.is_file()):
            continue
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        out = data.get("outputs") if isinstance(data, dict) else None
        if not isinstance(out, dict):
            return None
        asr = out.get("asr") if isinstance(out.get("asr"), dict) else {}
        text = out.get("transcript") or asr.get("text")
        model = asr.get("model") if isinstance(asr.get("model"), dict) else {}
        mid, sha = model.get("id"), model.get("sha256")
        return ASRRecord(file=p, transcript=text if isinstance(text, str) else None,
                         model_id=mid if isinstance(mid, str) and mid else None,
                         model_sha256=str(sha) if sha else None)
    return None


def read_into(sample: Sample, files: Optional[set[str]] = None) -> None:
    """Read the sample folder's records into ``sample.provenance`` (discovery calls it, with ``files``, the
    names of the files it listed in the folder)."""
    pv = sample.provenance
    if sample.folder is not None:
        ids = _ids(sample)
        pv.au_source = read_au_source(Path(sample.folder), ids, files)
        pv.asr = read_asr(Path(sample.folder), ids, files)
    pv.records_read = True


def au_source_of(sample: Sample) -> AUSourceRecord:
    """What the generator recorded about the sample's AU source (read now for a Sample discovery did not read)."""
    if sample.provenance.records_read:
        return sample.provenance.au_source
    if sample.folder is None:
        return AUSourceRecord()
    return read_au_source(Path(sample.folder), _ids(sample))


def asr_of(sample: Sample) -> Optional[ASRRecord]:
    """The audio stage's record of the sample's transcript, or None (read now when discovery did not)."""
    if sample.provenance.records_read:
        return sample.provenance.asr
    if sample.folder is None:
        return None
    return read_asr(Path(sample.folder), _ids(sample))
