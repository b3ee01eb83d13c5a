"""Dataset discovery: turn an INPUT (media folder, MER-Factory output root, MER-Factory JSON files, or a
JSONL/CSV manifest) into :class:`Sample` objects, saying what was skipped and why.

Nothing outside the input root (and any extra media roots the caller names) is read: ids are sanitised,
manifest paths must resolve inside the roots, and symlinks that lead out are skipped.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from mer_eval.domain import merfactory, records
from mer_eval.evidence import provenance_from_meta
from mer_eval.paths import UnsafePathError, is_within, resolve_media_path, sanitize_sample_id
from mer_eval.schema import Annotation, Sample, SampleType, clean_text

VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
AUDIO_EXT = {".wav", ".flac", ".mp3", ".m4a", ".ogg"}
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp"}
SKIP_DIRS = {"error_logs", ".llm_cache", "errors", "__pycache__", ".git", "mer-eval-probe"}
LABEL_FILE_NAMES = ("labels.csv", "label.csv", "label_file.csv")
TRANSCRIPT_CSV_NAMES = ("transcripts.csv", "transcript.csv")


class DiscoveryError(ValueError):
    pass


def _name_stem(name: str) -> str:
    """A label/transcript file's ``name`` column: a file stem, or a file name with a media extension.
    Only media extensions are stripped (``clip_v1.2`` stays ``clip_v1.2``)."""
    p = Path(name.strip())
    return p.stem if p.suffix.lower() in VIDEO_EXT | AUDIO_EXT | IMAGE_EXT else p.name


@dataclass
class Dataset:
    kind: str  # media | mer-factory | mer-factory-files | manifest
    root: Path
    samples: list[Sample]
    notes: list[str] = field(default_factory=list)  # dataset-level: skipped files and why
    label_file: Optional[Path] = None
    # samples that got a label / a reference transcript from a file the caller named (None: no file named)
    labels_matched: Optional[int] = None
    transcripts_matched: Optional[int] = None

    def by_id(self) -> dict[str, Sample]:
        return {s.id: s for s in self.samples}


# ---- helpers ------------------------------------------------------------------------------------

def _is_dir(e: os.DirEntry) -> bool:
    """``Path.is_dir()`` of a listed entry: False for a link loop or a dangling link (DirEntry raises there)."""
    try:
        return e.is_dir()
    except OSError:
        return False


def _is_file(e: os.DirEntry) -> bool:
    try:
        return e.is_file()
    except OSError:
        return False


def _walk_files(root: Path, notes: list[str]) -> Iterable[Path]:
    """All files under root, not descending into skipped dirs, not following links out of root."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            p = Path(dirpath) / fn
            if p.is_symlink():
                try:
                    p.resolve(strict=True)
                except (OSError, RuntimeError):  # a dangling link or a loop (x -> y -> x)
                    notes.append(f"{_shown(p.relative_to(root))}: skipped, a broken symlink or a symlink loop")
                    continue
                if not is_within(p, root):
                    notes.append(f"{_shown(p.relative_to(root))}: skipped, symlink leads outside {root}")
                    continue
            yield p


def _shown(name: object) -> str:
    """A file name as one printable line (a newline in a name would split the note)."""
    s = str(name)
    return repr(s) if any(not c.isprintable() for c in s) else s


def _read_text(path: Path, what: str) -> str:
    """A text file as UTF-8 (a BOM is dropped); anything else is a :class:`DiscoveryError` that says so."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DiscoveryError(f"{Path(path).name}: {what} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at "
                             f"offset {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise DiscoveryError(f"{Path(path).name}: {what} unreadable ({e.strerror or e})") from None


def read_label_file(path: Path, notes: Optional[list[str]] = None) -> dict[str, str]:
    """MER-Factory's ``--label-file``: CSV ``name,label`` (name = file stem), UTF-8 (a BOM is fine).

    A file that is not UTF-8 or lacks the ``name,label`` header is a :class:`DiscoveryError`. A name listed
    twice with different labels gets no label (which one is right is unknown); ``notes`` (when given) says so,
    and that a repeat with the same label was dropped."""
    path = Path(path)
    text = _read_text(path, "label file")
    reader = csv.DictReader(text.splitlines())
    fields = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "name" not in fields or "label" not in fields:
        raise DiscoveryError(f"{path.name}: label file needs a header row 'name,label'; its first row is "
                             f"{','.join(reader.fieldnames or []) or '(empty)'}")
    out: dict[str, str] = {}
    seen: dict[str, tuple[int, str]] = {}
    conflicts: set[str] = set()
    for n, row in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() if isinstance(v, str) else "" for k, v in row.items()}
        if not row.get("name"):
            continue
        name, label = _name_stem(row["name"]), row.get("label", "")
        if name in seen:
            first_row, first_label = seen[name]
            if first_label != label:
                conflicts.add(name)
                if notes is not None:
                    notes.append(f"{path.name}: {name} listed twice with different labels (row {first_row}: "
                                 f"{first_label!r}, row {n}: {label!r}); {name} gets no label")
            elif notes is not None:
                notes.append(f"{path.name}: {name} listed twice (rows {first_row} and {n}, same label)")
            continue
        seen[name] = (n, label)
        out[name] = label
    for name in conflicts:
        out.pop(name, None)
    return out


_SPHINX_LINE = re.compile(r"^\s*(?:<s>)?\s*(.*?)\s*(?:</s>)?\s*\(([^()]+)\)\s*$")


def read_transcripts(path: Path) -> dict[str, str]:
    """Reference transcripts: CSV ``name,transcript`` or CMU Sphinx ``<s> words </s> (file-id)`` lines."""
    path = Path(path)
    text = _read_text(path, "transcript file")
    out: dict[str, str] = {}
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        cols = {h.strip().lower(): h for h in reader.fieldnames or []}
        tcol = cols.get("transcript") or cols.get("text") or cols.get("reference")
        if "name" not in cols or tcol is None:
            raise DiscoveryError(f"{path}: needs columns 'name,transcript', found {reader.fieldnames}")
        for row in reader:
            name, ref = row.get(cols["name"]), row.get(tcol)
            if not isinstance(name, str) or not name.strip() or not isinstance(ref, str):
                continue  # a row without a name or a transcript cell is no reference (the sample shows none)
            out[_name_stem(name)] = ref.strip()
        return out
    for line in text.splitlines():
        m = _SPHINX_LINE.match(line)
        if m and m.group(1):
            out[_name_stem(m.group(2))] = m.group(1).strip()
    return out


def _is_openface_csv(p: Path) -> bool:
    try:
        with p.open(encoding="utf-8", errors="replace") as f:
            head = f.readline()
    except OSError:
        return False
    cols = [c.strip() for c in head.split(",")]
    return "frame" in cols and any(c.startswith("AU") and c.endswith("_r") for c in cols)


def _plain_id(stem: str) -> Optional[str]:
    try:
        return sanitize_sample_id(stem)
    except UnsafePathError:
        return None


def _openface_header_problem(p: Path) -> Optional[str]:
    """Why a CSV with OpenFace AU columns is still not an OpenFace CSV (no ``frame`` column), else None."""
    try:
        with p.open(encoding="utf-8", errors="replace") as f:
            cols = [c.strip() for c in f.readline().split(",")]
    except OSError:
        return None
    if "frame" not in cols and any(c.startswith("AU") and c.endswith("_r") for c in cols):
        return "has OpenFace AU columns but no 'frame' column; not read as an OpenFace CSV"
    return None


def _unique_ids(items: list[tuple[str, str]], notes: Optional[list[str]] = None) -> dict[str, str]:
    """(key, raw stem or relative name) -> unique sanitised ids.

    A file stem is the id when it is already safe; other characters become ``_``. Two names that give one
    id are never merged: in different folders they get the folder prefix, and a clash left after that
    (``a b.wav`` beside ``a_b.wav``) gives the name that is not the id verbatim a suffix of its own hash
    (``a_b-3f2a1c9e``); so does a name with no ASCII letter or digit (``日本語.wav``: ``id-…``). ``notes``
    (when given) says which name got which id."""
    import hashlib

    def tag(raw: str) -> str:
        return hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]

    base: dict[str, Optional[str]] = {k: _plain_id(Path(stem).name) for k, stem in items}
    counts: dict[str, int] = {}
    for sid in base.values():
        if sid is not None:
            counts[sid] = counts.get(sid, 0) + 1
    out: dict[str, str] = {}
    for key, stem in items:
        sid = base[key]
        if sid is not None and counts[sid] > 1 and "/" in stem:
            sid = _plain_id(stem.replace("/", "__")) or sid
        out[key] = sid or ""
    taken: dict[str, list[str]] = {}
    for key, stem in items:
        if out[key]:
            taken.setdefault(out[key], []).append(key)
    raw_of = dict(items)
    for sid, keys in taken.items():
        if len(keys) < 2:
            continue
        # the name that is the id verbatim keeps it; every other one gets a hash suffix
        keep = next((k for k in keys if Path(raw_of[k]).name == sid), None)
        for k in keys:
            if k == keep:
                continue
            new = f"{sid[:190]}-{tag(raw_of[k])}"
            out[k] = new
            if notes is not None:
                notes.append(f"{_shown(raw_of[k])}: its id {sid!r} is shared with another file name; id {new!r}")
    for key, stem in items:
        if not out[key]:
            out[key] = f"id-{tag(stem)}"
            if notes is not None:
                notes.append(f"{_shown(stem)}: no ASCII letter or digit in the name; id {out[key]!r}")
    return out


# ---- kinds --------------------------------------------------------------------------------------

def detect_kind(path: Path) -> str:
    path = Path(path)
    if path.is_file():
        suf = path.suffix.lower()
        if suf in (".jsonl", ".csv"):
            return "manifest"
        if suf == ".json":
            return "mer-factory-files"
        raise DiscoveryError(f"{path}: a file input must be a .jsonl/.csv manifest or a MER-Factory .json")
    if not path.is_dir():
        raise DiscoveryError(f"{path} does not exist")
    with os.scandir(path) as it:
        subdirs = [path / e.name for e in sorted(it, key=lambda e: e.name) if _is_dir(e)
                   and e.name not in SKIP_DIRS and not e.name.startswith(".")]
    for d in subdirs:
        for f in d.iterdir():
            if f.suffix == ".json" and merfactory.result_kind(f) is not None:
                return "mer-factory"
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix.lower() == ".json" and f.name != "run.json":
            try:
                data = merfactory.load_json(f)
            except (merfactory.MerFactoryFormatError, OSError):
                continue
            if merfactory.result_kind(f, data) is not None:
                return "mer-factory-files"
    return "media"


def discover(
    input_path: Path,
    label_file: Optional[Path] = None,
    transcripts: Optional[Path] = None,
    media_roots: Optional[list[Path]] = None,
    media_dir: Optional[Path] = None,
    workers: int = 1,
    require_matches: bool = True,
) -> Dataset:
    """``workers`` > 1: a MER-Factory root of more than :data:`PARALLEL_ABOVE` sample folders is read by that many
    spawned processes (the same samples and notes, in the same order, as one process reads).

    ``require_matches``: a ``label_file`` or ``transcripts`` file the caller named that matches none of the
    samples is a :class:`DiscoveryError` (the run would go on without the labels or references the user asked
    for, label accuracy and WER silently not measured); :func:`discover_tree` checks the datasets together."""
    input_path = Path(input_path)
    kind = detect_kind(input_path)
    root = input_path if input_path.is_dir() else input_path.parent
    if kind == "media":
        ds = _discover_media(root)
    elif kind == "mer-factory":
        ds = _discover_mer_factory_root(root, media_roots or [], workers=workers)
    elif kind == "mer-factory-files":
        files = [input_path] if input_path.is_file() else sorted(
            p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".json" and p.name != "run.json")
        ds = _discover_mer_factory_files(root, files)
    else:
        ds = _discover_manifest(input_path, media_roots or [])
    from mer_eval.sample_store import SampleStore, compact

    if not isinstance(ds.samples, SampleStore):
        ds.samples = compact(ds.samples)
    _apply_labels(ds, label_file)
    _apply_transcripts(ds, transcripts)
    if require_matches:
        check_matches([ds], label_file, transcripts)
    if media_dir is not None:  # media a MER-Factory output records but lacks, found under DIR only
        from mer_eval.media_dir import apply_media_dir

        apply_media_dir(ds, Path(media_dir))
    return ds


def _apply_labels(ds: Dataset, label_file: Optional[Path]) -> None:
    auto = label_file is None
    if label_file is None:
        for n in LABEL_FILE_NAMES:
            if (ds.root / n).is_file():
                label_file = ds.root / n
                break
    if label_file is None:
        return
    if auto:  # found beside the data, not asked for: a bad one is a note, the run goes on without labels
        try:
            labels = read_label_file(label_file, ds.notes)
        except DiscoveryError as e:
            ds.notes.append(f"{e}; labels not used")
            return
    else:
        labels = read_label_file(label_file, ds.notes)
    ds.label_file = Path(label_file)
    matched = 0
    for i, s in enumerate(ds.samples):
        stem_keys = {s.id}
        for p in s.media().values():
            stem_keys.add(Path(p).stem)
        for k in stem_keys:
            if k in labels and labels[k]:
                s.label = labels[k]
                ds.samples[i] = s  # written back (a SampleStore holds copies)
                matched += 1
                break
    ds.notes.append(f"labels: {matched} of {len(ds.samples)} samples matched in {Path(label_file).name}")
    if not auto:
        ds.labels_matched = matched


def skipped_notes(notes: list[str]) -> list[str]:
    """The notes of inputs reading skipped (each such note says "skipped"): in no score, gate or export."""
    return [n for n in notes if "skipped" in n]


def check_matches(datasets: list[Dataset], label_file: Optional[Path], transcripts: Optional[Path]) -> None:
    """A label or transcript file the caller named that gave none of the samples anything is an error."""
    n = sum(len(d.samples) for d in datasets)
    if not n:
        return
    ids = [d.samples[i].id for d in datasets for i in range(min(3, len(d.samples)))][:3]  # no unpacking of all
    for what, path, got in (("label file", label_file, [d.labels_matched for d in datasets]),
                            ("transcript file", transcripts, [d.transcripts_matched for d in datasets])):
        if path is not None and sum(g or 0 for g in got) == 0:
            table = read_label_file(path) if what == "label file" else read_transcripts(path)
            names = list(table)[:3]
            raise DiscoveryError(
                f"{Path(path).name}: {what} matches none of the {n} samples: its names ({len(table)}, e.g. "
                f"{', '.join(names) or 'none'}) are neither a sample id (e.g. {', '.join(ids)}) nor a media file's "
                f"stem")


def _apply_transcripts(ds: Dataset, transcripts: Optional[Path]) -> None:
    if transcripts is None:
        return
    table = read_transcripts(transcripts)
    matched = 0
    for i, s in enumerate(ds.samples):
        keys = [s.id] + [Path(p).stem for p in s.media().values()]
        for k in keys:
            if k in table:
                s.reference_transcript = table[k]
                ds.samples[i] = s  # written back (a SampleStore holds copies)
                matched += 1
                break
    ds.transcripts_matched = matched


def _discover_media(root: Path) -> Dataset:
    notes: list[str] = []
    groups: dict[tuple[Path, str], dict[str, Path]] = {}
    transcripts: dict[str, str] = {}
    label_names = set(LABEL_FILE_NAMES)
    files = list(_walk_files(root, notes))
    for p in files:
        if p.name == "transcription" or p.suffix.lower() == ".transcription" \
                or p.name.lower() in TRANSCRIPT_CSV_NAMES:
            try:
                transcripts.update(read_transcripts(p))
            except DiscoveryError as e:
                notes.append(f"{e}; reference transcripts in it not used")
    for p in files:
        suf = p.suffix.lower()
        key = (p.parent, p.stem)
        if suf in VIDEO_EXT:
            groups.setdefault(key, {})["video"] = p
        elif suf in AUDIO_EXT:
            groups.setdefault(key, {})["audio"] = p
        elif suf in IMAGE_EXT:
            if p.stem.endswith("_peak_frame"):
                groups.setdefault((p.parent, p.stem[: -len("_peak_frame")]), {})["peak_frame_image"] = p
            else:
                groups.setdefault(key, {})["image"] = p
    for p in files:
        suf = p.suffix.lower()
        key = (p.parent, p.stem)
        if suf == ".csv" and p.name.lower() not in label_names | set(TRANSCRIPT_CSV_NAMES):
            if key in groups and _is_openface_csv(p):
                groups[key]["openface_csv"] = p
            elif _is_openface_csv(p):
                notes.append(f"{p.relative_to(root)}: OpenFace CSV with no media of the same name; skipped")
            elif _openface_header_problem(p):
                notes.append(f"{_shown(p.relative_to(root))}: {_openface_header_problem(p)}")
        elif suf == ".txt" and key in groups:
            groups[key]["transcript_file"] = p
    # a still image that shares its stem with a video is its own sample (MER-Factory would write both to
    # OUT/<stem>/ and clobber one): it gets the id "<stem>_<ext>"
    for (parent, stem), media in list(groups.items()):
        if "video" in media and "image" in media:
            img = media.pop("image")
            groups[(parent, f"{stem}_{img.suffix.lstrip('.').lower()}")] = {"image": img}
    ids = _unique_ids([(f"{k[0]}|{k[1]}", str((k[0] / k[1]).relative_to(root))) for k in groups], notes)
    samples = []
    for (parent, stem), media in sorted(groups.items(), key=lambda kv: str(kv[0])):
        sid = ids[f"{parent}|{stem}"]
        if "video" in media:
            stype = SampleType.mer
        elif "audio" in media:
            stype = SampleType.audio
        elif "image" in media:
            stype = SampleType.image
        else:
            notes.append(f"{(parent / stem).relative_to(root)}: only a peak frame, no media; skipped")
            continue
        ref = None
        sample_notes: list[str] = []
        if "transcript_file" in media:
            try:
                ref = clean_text(_read_text(media["transcript_file"], "reference transcript"))
            except DiscoveryError as e:
                sample_notes.append(f"{e}; no reference transcript")
        ref = ref or transcripts.get(stem)
        samples.append(
            Sample(
                id=sid,
                type=stype,
                source="media",
                video=media.get("video"),
                audio=media.get("audio"),
                image=media.get("image"),
                peak_frame_image=media.get("peak_frame_image"),
                openface_csv=media.get("openface_csv"),
                reference_transcript=ref,
                notes=sample_notes,
            )
        )
    if not samples:
        notes.append(f"no media files ({', '.join(sorted(VIDEO_EXT | AUDIO_EXT | IMAGE_EXT))}) under {root}")
    return Dataset(kind="media", root=root, samples=samples, notes=notes)


def _media_index(roots: list[Path]) -> dict[str, dict[str, Path]]:
    idx: dict[str, dict[str, Path]] = {}
    notes: list[str] = []
    for r in roots:
        if not Path(r).is_dir():
            continue
        for p in _walk_files(Path(r), notes):
            suf = p.suffix.lower()
            kind = "video" if suf in VIDEO_EXT else "audio" if suf in AUDIO_EXT else "image" if suf in IMAGE_EXT \
                else None
            if kind:
                idx.setdefault(p.stem, {}).setdefault(kind, p)
    return idx


def _discover_mer_factory_root(root: Path, media_roots: list[Path], workers: int = 1) -> Dataset:
    notes: list[str] = []
    run_json = root / "run.json"
    roots = list(media_roots)
    if run_json.is_file():
        try:
            doc = json.loads(run_json.read_text(encoding="utf-8-sig"))
            inp = doc.get("input") if isinstance(doc, dict) else None
            if isinstance(inp, str) and inp and Path(inp).is_dir():
                if len(Path(inp).resolve().parts) <= 2:  # "/", "/etc", "C:\\": not a dataset folder
                    notes.append(f"run.json: input {inp!r} is a filesystem root or top-level folder; media "
                                 "are not looked up there")
                else:
                    roots.append(Path(inp))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, OSError) as e:
            notes.append(f"run.json unreadable: {e}")
    media = _media_index(roots)
    with os.scandir(root) as it:  # by name, as sorted(Path.iterdir()) orders one folder's entries
        dirs = [root / e.name for e in sorted(it, key=lambda e: e.name) if _is_dir(e) and e.name not in SKIP_DIRS
                and not e.name.startswith(".")]
    from mer_eval import sample_store

    # a large run is kept compact as it is read (peak memory flat in the number of samples)
    samples: Any = sample_store.SampleStore() if len(dirs) > sample_store.COMPACT_ABOVE else []
    outside = {d.name for d in dirs if d.is_symlink() and not is_within(d, root)}
    # folders `a b` and `a_b` never share an id (nor its output folder): the one that is not the id verbatim
    # gets a hash suffix, as media files do (_unique_ids)
    ids = _unique_ids([(d.name, d.name) for d in dirs if d.name not in outside], notes)
    todo = []
    for d in dirs:
        if d.name in outside:
            notes.append(f"{d.name}: skipped, symlink leads outside {root}")
            continue
        todo.append((d, ids[d.name]))
    workers = max(1, int(workers or 1))
    if workers > 1 and len(todo) > PARALLEL_ABOVE and not _in_daemon():
        read = _read_folders_parallel(todo, root, media, workers, packed=isinstance(samples, sample_store.SampleStore))
    else:
        read = (_read_mer_factory_folder(d, sid, root, media) for d, sid in todo)
    types: dict[str, int] = {}
    for s, folder_notes in read:
        notes.extend(folder_notes)
        if s is None:
            continue
        if isinstance(s, tuple):  # read in a worker, packed there: (blob, id)
            samples.append_packed(*s)
        else:
            samples.append(s)
            types[s.type.value] = types.get(s.type.value, 0) + 1
    known = set(samples.ids) if isinstance(samples, sample_store.SampleStore) else {s.id for s in samples}
    failed = failed_generations(root, known, ids, max(types, key=types.get) if types else SampleType.mer.value)
    if failed:  # a failed sample's folder is accounted for: its "skipped" note gives way to the failure's
        heads = tuple(f"{f.folder.name if f.folder else f.id}: " for f in failed)
        notes = [n for n in notes if not (n.startswith(heads) and "skipped" in n)]
        for f in failed:
            notes.append(f"{f.id}: {FAILED_NOTE.format(why=f.generation_error)}")
            samples.append(f)
    return Dataset(kind="mer-factory", root=root, samples=samples, notes=notes)


FAILED_NOTE = "generate failed ({why}) and wrote no annotation: scored as abstained on every metric"
ERROR_LOG_HEAD = 64 * 1024  # bytes of a MER-Factory error log read for its reason (its first line)
ERROR_LOG_MAX = 1 << 20  # a mer-eval error record larger than this is not read


def failed_generations(root: Path, known: set[str], folder_ids: dict[str, str], run_type: str) -> list[Sample]:
    """The samples generation failed on and wrote no result for, from the run's error logs: mer-eval's
    ``error_logs/<id>.json`` (stage, reason, type; an old run's ``errors/<id>.json``) and MER-Factory's
    ``error_logs/<name>_error.log`` (its text; the type is the run's). Not answering is never scored better than
    answering wrong: each such sample is kept, with no annotation and ``generation_error`` set, so that every
    metric scores it abstained (the worst value), compare counts it against the provider that failed it and no
    gate includes it. A log whose sample was read (a partial failure, or a failure an earlier attempt left
    behind) adds nothing."""
    from mer_eval.paths import check_sample_id

    types = {t.value for t in SampleType}
    out: dict[str, Sample] = {}
    for sub in ("errors", "error_logs"):  # an old run's errors/ first: the newer error_logs/ log wins
        d = root / sub
        if not d.is_dir() or d.is_symlink():
            continue
        for f in sorted(d.iterdir(), key=lambda x: x.name):
            if not f.is_file() or f.is_symlink():
                continue
            stype = run_type
            if f.name.endswith("_error.log"):  # MER-Factory: <name>_error.log, free text
                name = f.name[: -len("_error.log")]
                try:
                    with open(f, "rb") as fh:  # its first lines say why; a traceback log can be long
                        text = fh.read(ERROR_LOG_HEAD).decode("utf-8", errors="replace")
                except OSError as e:
                    text = f"its error log is unreadable ({e.strerror})"
                first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "no reason logged")
                why = f"MER-Factory's error log: {first[:300]}"
            elif f.suffix == ".json":  # mer-eval: <id>.json
                name = f.stem
                try:
                    size = f.stat().st_size
                    if size > ERROR_LOG_MAX:
                        raise ValueError(f"{size} bytes, more than an error record holds")
                    doc = json.loads(f.read_text(encoding="utf-8"))
                except (OSError, ValueError) as e:
                    doc = {"reason": f"its error log is unreadable ({e})"}
                if not isinstance(doc, dict):
                    doc = {"reason": "its error log is not a JSON object"}
                stage, reason = doc.get("stage"), str(doc.get("reason") or "no reason logged")
                why = f"stage {stage}: {reason[:300]}" if stage else reason[:300]
                if doc.get("type") in types:
                    stype = doc["type"]
            else:
                continue
            sid = folder_ids.get(name) or sanitize_sample_id(name)
            try:
                check_sample_id(sid)
            except UnsafePathError:
                continue
            if sid in known:
                continue
            folder = root / name if (root / name).is_dir() and not (root / name).is_symlink() else None
            out[sid] = Sample(id=sid, type=SampleType(stype), source="mer-factory", folder=folder,
                              generation_error=why, notes=[f"{sub}/{f.name}: {why}"])
    return [out[k] for k in sorted(out)]


PARALLEL_ABOVE = 2000  # sample folders: above this many (and workers > 1), they are read in worker processes


def _in_daemon() -> bool:
    import multiprocessing

    return bool(multiprocessing.current_process().daemon)  # a daemonic process may not start workers


def _read_folders_chunk(todo: list[tuple[Path, str]], root: Path, media: dict[str, dict[str, Path]],
                        packed: bool) -> list[tuple[Any, list[str]]]:
    """:func:`_read_mer_factory_folder` over one worker's folders; ``packed``: each sample as ``(blob, id)``, a
    :class:`~mer_eval.sample_store.SampleStore` blob (small to send back, and what the store keeps)."""
    from mer_eval.sample_store import SampleStore

    out = []
    for d, sid in todo:
        s, folder_notes = _read_mer_factory_folder(d, sid, root, media)
        out.append(((SampleStore.pack(s), s.id) if packed and s is not None else s, folder_notes))
    return out


def _read_folders_parallel(todo: list[tuple[Path, str]], root: Path, media: dict[str, dict[str, Path]],
                           workers: int, packed: bool):
    """The folders read by ``workers`` spawned processes, in contiguous pieces, yielded in folder order (the
    same samples and notes as one process reads, in the same order)."""
    from mer_eval.pool import spawn_pool

    size = max(1, min(500, -(-len(todo) // (workers * 4))))
    with spawn_pool(workers) as ex:
        futs = [ex.submit(_read_folders_chunk, todo[lo:lo + size], root, media, packed)
                for lo in range(0, len(todo), size)]
        for f in futs:
            yield from f.result()


def _read_mer_factory_folder(d: Path, sid: str, root: Path,
                             media: dict[str, dict[str, Path]]) -> tuple[Optional[Sample], list[str]]:
    """One sample folder of a MER-Factory output root: its sample (None when it has no readable result) and the
    dataset-level notes it gives (files skipped and why)."""
    notes: list[str] = []
    s = Sample(id=sid, source="mer-factory", folder=d)
    kinds: list[SampleType] = []
    bad_files: list[str] = []
    with os.scandir(d) as it:
        entries = sorted(it, key=lambda e: e.name)
    outside: set[str] = set()
    for e in entries:  # a link is resolved only when it is one (DirEntry knows without a system call)
        if e.is_symlink() and not is_within(d / e.name, root):
            notes.append(f"{d.name}/{e.name}: skipped, symlink leads outside {root}")
            outside.add(e.name)
    # followed links included, as Path.is_file; links that lead out are never read (nor their records)
    file_names = {e.name for e in entries if e.name not in outside and _is_file(e)}
    for e in entries:
        name = e.name
        if name in outside:
            continue
        stem, suf = os.path.splitext(name)
        suf = suf.lower()
        if suf == ".json":
            f = d / name
            kind = merfactory.result_kind(f)
            if kind is None:
                continue
            try:
                data = merfactory.load_json(f)
                s.notes.extend(f"{name}: {n}" for n in merfactory.merge_result(s.annotation, kind, data))
            except merfactory.MerFactoryFormatError as err:
                msg = str(err) if str(err).startswith(name) else f"{name}: {err}"
                s.notes.append(f"{msg}; skipped")
                bad_files.append(msg)
                continue
            s.annotation_files[kind.value] = f
            kinds.append(kind)
            s.label = s.label or merfactory.ground_truth(data)
            src_stem = merfactory.source_stem(data)
            if src_stem and src_stem in media:
                for mk, mp in media[src_stem].items():
                    if getattr(s, mk) is None:
                        setattr(s, mk, mp)
        elif suf in AUDIO_EXT and s.audio is None:
            s.audio = d / name
        elif suf == ".csv" and _is_openface_csv(d / name):
            s.openface_csv = d / name
        elif suf == ".csv" and _openface_header_problem(d / name):
            s.notes.append(f"{name}: {_openface_header_problem(d / name)}")
        elif suf in IMAGE_EXT and stem.endswith("_peak_frame"):
            s.peak_frame_image = d / name
        elif suf in VIDEO_EXT and s.video is None:
            s.video = d / name
        elif suf in IMAGE_EXT and s.image is None:
            s.image = d / name
    if not kinds:
        notes.append(f"{d.name}: " + ("; ".join(bad_files) + "; no readable MER-Factory result, skipped"
                                      if bad_files else "no MER-Factory result JSON; skipped"))
        return None, notes
    if merfactory.META_NAME in file_names:
        meta_file = d / merfactory.META_NAME
        try:
            meta = merfactory.load_json(meta_file)
            s.notes.extend(f"{merfactory.META_NAME}: {n}" for n in merfactory.merge_meta(s.annotation, meta))
            s.provenance = provenance_from_meta(meta)
        except merfactory.MerFactoryFormatError as err:
            s.notes.append(f"{merfactory.META_NAME}: {err}")
    records.read_into(s, file_names)  # the generator's AU-source and ASR records, for the metrics
    order = [SampleType.mer, SampleType.image, SampleType.video, SampleType.audio, SampleType.au]
    s.type = next(t for t in order if t in kinds)
    plain = _plain_id(d.name)
    if s.media().get("video") is None and plain in media:
        for mk, mp in media[plain].items():
            if getattr(s, mk) is None:
                setattr(s, mk, mp)
    return s, notes


def _discover_mer_factory_files(root: Path, files: list[Path]) -> Dataset:
    notes: list[str] = []
    entries = []
    for f in files:
        try:
            data = merfactory.load_json(f)
        except merfactory.MerFactoryFormatError as e:
            notes.append(str(e))
            continue
        kind = merfactory.result_kind(f, data)
        if kind is None:
            notes.append(f"{f.name}: not a MER-Factory result (keys: {', '.join(list(data)[:6])}); skipped")
            continue
        entries.append((f, kind, data))
    ids = _unique_ids([(str(f), merfactory.sample_stem(f)) for f, _, _ in entries], notes)
    samples = []
    for f, kind, data in entries:
        s = Sample(id=ids[str(f)], type=kind, source="mer-factory", annotation=Annotation())
        try:
            s.notes.extend(f"{f.name}: {n}" for n in merfactory.merge_result(s.annotation, kind, data))
        except merfactory.MerFactoryFormatError as e:
            notes.append(f"{f.name}: {e}; skipped")
            continue
        if "video_id" in data and "coarse_descriptions" in data:
            s.source = "mer-factory-legacy"
        s.annotation_files[kind.value] = f
        s.label = merfactory.ground_truth(data)
        samples.append(s)
    return Dataset(kind="mer-factory-files", root=root, samples=samples, notes=notes)


_MANIFEST_MEDIA = {"video": "video", "audio": "audio", "image": "image", "peak_frame": "peak_frame_image",
                   "peak_frame_image": "peak_frame_image", "openface_csv": "openface_csv", "csv": "openface_csv"}
_MANIFEST_TEXT = {"label": "label", "ground_truth_label": "label", "reference_transcript": "reference_transcript",
                  "transcript_reference": "reference_transcript"}


_JSON_TYPE = {bool: "boolean", int: "number", float: "number", dict: "object", list: "array"}


def _discover_manifest(path: Path, media_roots: list[Path]) -> Dataset:
    root = path.parent
    roots = [root] + list(media_roots)
    rows: list[tuple[str, dict]] = []  # (where: "manifest.jsonl:3" / "manifest.csv row 3", row)
    notes: list[str] = []
    text = _read_text(path, "manifest")
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except (json.JSONDecodeError, RecursionError) as e:
                    notes.append(f"{path.name}:{n}: not JSON ({e}); line skipped")
                    continue
                if not isinstance(obj, dict):
                    notes.append(f"{path.name}:{n}: expected an object, got a JSON {type(obj).__name__}; "
                                 "line skipped")
                    continue
                rows.append((f"{path.name}:{n}", obj))
    else:
        rows = [(f"{path.name} row {n}", dict(r)) for n, r in enumerate(csv.DictReader(text.splitlines()),
                                                                           start=2)]
    samples = []
    seen: dict[str, str] = {}
    ann_fields = set(Annotation.model_fields)
    types = {t.value for t in SampleType}
    for where, row in rows:
        n = where
        row = {str(k).strip(): v for k, v in row.items() if k is not None}
        # a media field holds a path: a JSON true, number, object or array there names no file (never looked up)
        not_path = next((k for k in _MANIFEST_MEDIA if row.get(k) is not None and not isinstance(row[k], str)), None)
        if not_path is not None:
            notes.append(f"{n}: {not_path} is a JSON {_JSON_TYPE.get(type(row[not_path]), 'value')}, not a file "
                         "path; skipped")
            continue
        row = {k: (v if v is None or isinstance(v, (str, int, float)) else json.dumps(v)) for k, v in row.items()}
        raw_id = row.get("id") or row.get("name") or row.get("sample_id")
        if not raw_id:
            media_val = next((row[k] for k in ("video", "audio", "image") if row.get(k)), None)
            raw_id = Path(media_val).stem if media_val else None
        if not raw_id:
            notes.append(f"{n}: no id and no media; skipped")
            continue
        try:
            sid = sanitize_sample_id(str(raw_id)) if row.get("id") is None else _strict_id(str(raw_id))
        except UnsafePathError as e:
            notes.append(f"{n}: skipped ({e})")
            continue
        kw: dict = {}
        bad = False
        for k, attr in _MANIFEST_MEDIA.items():
            v = row.get(k)
            if v:
                try:
                    kw[attr] = resolve_media_path(str(v), root, roots)
                except UnsafePathError as e:
                    notes.append(f"{n} ({sid}): skipped ({e})")
                    bad = True
                    break
                try:
                    found = Path(kw[attr]).is_file()
                except OSError as e:  # e.g. a name longer than the filesystem allows
                    notes.append(f"{n} ({sid}): skipped, {k} file {str(v)[:80]!r} cannot be looked up "
                                 f"({e.strerror or type(e).__name__})")
                    bad = True
                    break
                if not found:
                    notes.append(f"{n} ({sid}): skipped, {k} file {v!r} not found")
                    bad = True
                    break
        if bad:
            continue
        if sid in seen:
            notes.append(f"{n}: id {sid!r} listed more than once (first at {seen[sid]}); this row skipped")
            continue
        stype = row.get("type") or ("mer" if kw.get("video") else "audio" if kw.get("audio") else "image")
        if str(stype).lower() not in types:
            notes.append(f"{n} ({sid}): skipped, unknown type {stype!r} (known: {', '.join(sorted(types))})")
            continue
        seen[sid] = n
        for k, attr in _MANIFEST_TEXT.items():
            if row.get(k):
                kw[attr] = str(row[k]).strip()
        ann = Annotation(**{k: clean_text(v) for k, v in row.items() if k in ann_fields and isinstance(v, str)})
        samples.append(Sample(id=sid, type=str(stype).lower(), source="manifest", annotation=ann, **kw))
    return Dataset(kind="manifest", root=root, samples=samples, notes=notes)


def _strict_id(raw: str) -> str:
    """Ids given explicitly in a manifest are checked, not rewritten: ``../x`` is refused, not renamed."""
    from mer_eval.paths import check_sample_id

    return check_sample_id(raw)


def discover_tree(root: Path, label_file: Optional[Path] = None, transcripts: Optional[Path] = None,
                  ) -> list[Dataset]:
    """A folder that holds several datasets side by side (e.g. ``examples/``: ``media/`` and ``mer-factory/``):
    each MER-Factory subfolder is its own dataset, the rest is one media dataset. A plain dataset folder
    gives a list of one."""
    root = Path(root)
    kind = detect_kind(root)
    if kind != "media":
        return [discover(root, label_file=label_file, transcripts=transcripts)]
    subs = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name not in SKIP_DIRS and not d.name.startswith(".")]
    nested = [d for d in subs if detect_kind(d) != "media"]
    if not nested:
        return [discover(root, label_file=label_file, transcripts=transcripts)]
    # one file for every dataset of the tree: each may match only its own samples, so they are checked together
    out = [discover(d, label_file=label_file, transcripts=transcripts, require_matches=False) for d in nested]
    media_subs = [d for d in subs if d not in nested]
    for d in media_subs:
        ds = discover(d, label_file=label_file, transcripts=transcripts, require_matches=False)
        if ds.samples:
            out.insert(0, ds)
    check_matches(out, label_file, transcripts)
    return out
