"""``--media-dir DIR``: find the media a MER-Factory output names but does not hold.

MER-Factory records where each input was (``source_path``; ``audio_path`` for the extracted wav of a MER
sample), as a path on the machine that ran it: ``/content/OpenFace/samples/default.wmv``, ``C:\\data\\a.mp4``.
Its image- and audio-type outputs keep no copy of the input in the output folder, so without the media no
CLIP, CLAP or ASR score can be computed. Given ``DIR``, each recorded path is looked up *under DIR only*:

1. by relative path, longest tail first: ``DIR/OpenFace/samples/default.wmv``, ``DIR/samples/default.wmv``,
   ``DIR/default.wmv`` (so a copy of the original tree, or of any part of it, is found exactly);
2. else by file name anywhere under DIR (the walk does not follow links), when exactly one file has it; two
   or more are ambiguous and none is taken (the sample's note names how many);
3. the older MER-Factory schema records only ``video_id`` (no path, no extension): a media file whose stem is
   that id, when exactly one has it.

A candidate is used only when it is a regular file whose real path (links resolved) is inside DIR: a link
under DIR that leads out of it, or a recorded path with ``..`` in it, is never followed. Only media the
sample lacks are filled (a file inside the output folder always wins), by kind of file: video, image or
audio by extension (``source_path``), audio for ``audio_path``. What was found, by which rule, and what was
not, is in each sample's notes and one dataset note.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Optional

from mer_eval.paths import is_within

PATH_KEYS = ("source_path", "source_video", "audio_path")


# discovery's extensions and MER-Factory's (utils/config.py: .flv .wmv videos, .bmp images): what it may record
MF_VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".flv", ".wmv"}
MF_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp"}
MF_AUDIO_EXT = {".wav", ".mp3", ".flac", ".m4a"}


def media_kind(name: str) -> Optional[str]:
    """``video`` / ``image`` / ``audio`` by a file name's extension, None for anything else."""
    from mer_eval.discovery import AUDIO_EXT, IMAGE_EXT, VIDEO_EXT

    suf = Path(name).suffix.lower()
    if suf in VIDEO_EXT | MF_VIDEO_EXT:
        return "video"
    if suf in IMAGE_EXT | MF_IMAGE_EXT:
        return "image"
    return "audio" if suf in AUDIO_EXT | MF_AUDIO_EXT else None


def _parts(recorded: str) -> list[str]:
    """The components of a recorded path, POSIX or Windows, without its anchor (``/``, ``C:``)."""
    parts = [p for p in re.split(r"[\\/]+", recorded.strip()) if p and p != "."]
    if parts and re.fullmatch(r"[A-Za-z]:", parts[0]):
        parts = parts[1:]
    return parts


class MediaDir:
    """Look-ups under one folder (its name index is built once, on the first name look-up)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"--media-dir {root}: not a folder")
        self.real = self.root.resolve()
        self._names: Optional[dict[str, list[Path]]] = None
        self._stems: Optional[dict[str, list[Path]]] = None

    def _inside(self, p: Path) -> bool:
        try:
            return p.is_file() and is_within(p, self.real)
        except OSError:
            return False

    def _index(self) -> None:
        names: dict[str, list[Path]] = {}
        stems: dict[str, list[Path]] = {}
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                p = Path(dirpath) / f
                if media_kind(f) is None or not self._inside(p):
                    continue
                names.setdefault(f, []).append(p)
                stems.setdefault(Path(f).stem, []).append(p)
        self._names, self._stems = names, stems

    def find(self, recorded: str) -> tuple[Optional[Path], str]:
        """``(path under DIR or None, how / why not)`` for one recorded path."""
        parts = _parts(recorded)
        if not parts:
            return None, "empty path"
        if ".." in parts:
            return None, f"{recorded!r} contains '..'; not followed"
        for k in range(len(parts), 0, -1):  # longest tail first
            cand = self.root.joinpath(*parts[-k:])
            if self._inside(cand):
                return cand, ("by relative path " + "/".join(parts[-k:])) if k > 1 else "by file name"
        if self._names is None:
            self._index()
        hits = (self._names or {}).get(parts[-1], [])
        if len(hits) == 1:
            return hits[0], "by file name (in a subfolder)"
        if len(hits) > 1:
            return None, f"{len(hits)} files named {parts[-1]!r} under {self.root}: ambiguous, none taken"
        return None, f"no file named {parts[-1]!r} under {self.root}"

    def find_stem(self, stem: str) -> tuple[Optional[Path], str]:
        """A media file whose stem is ``stem`` (the older schema's ``video_id``), when exactly one."""
        if "/" in stem or "\\" in stem or stem in ("", ".", ".."):
            return None, f"video_id {stem!r} is no file stem"
        if self._stems is None:
            self._index()
        hits = (self._stems or {}).get(stem, [])
        if len(hits) == 1:
            return hits[0], "by video_id (file stem)"
        if len(hits) > 1:
            return None, f"{len(hits)} media files with stem {stem!r} under {self.root}: ambiguous, none taken"
        return None, f"no media file with stem {stem!r} under {self.root}"


def recorded_paths(sample: Any) -> list[tuple[str, str]]:
    """``(key, recorded value)`` for the paths a sample's MER-Factory result files record (source_path,
    source_video, audio_path; the older schema's video_id), in file order, each value once."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for f in (getattr(sample, "annotation_files", None) or {}).values():
        try:
            data = json.loads(Path(f).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        for key in (*PATH_KEYS, "video_id"):
            v = data.get(key)
            if isinstance(v, str) and v.strip() and v.strip() not in seen and v.strip().upper() != "N/A":
                seen.add(v.strip())
                out.append((key, v.strip()))
    return out


def _usable(p: Optional[Path]) -> bool:
    return p is not None and Path(p).is_file()


def apply_media_dir(ds: Any, media_dir: Path) -> dict[str, int]:
    """Fill the media each sample of ``ds`` lacks from ``media_dir`` (see the module doc). Returns counts
    ``{"found": n, "not_found": m}`` and adds a dataset note; per-sample notes say what was taken and how."""
    md = MediaDir(Path(media_dir))
    found = missing = 0
    for i, s in enumerate(ds.samples):
        found, missing = _fill(s, md, found, missing)
        ds.samples[i] = s  # written back (a SampleStore holds copies)
    ds.notes.append(f"--media-dir {media_dir}: {found} recorded media path{'s' if found != 1 else ''} found, "
                    f"{missing} not found (see the samples' notes)")
    return {"found": found, "not_found": missing}


def _fill(s: Any, md: "MediaDir", found: int, missing: int) -> tuple[int, int]:
    """One sample's missing media filled from ``md``: the counts updated."""
    for key, value in recorded_paths(s):
        if key == "video_id":
            if any(_usable(getattr(s, k)) for k in ("video", "image", "audio")):
                continue
            path, how = md.find_stem(value)
            kind = media_kind(path.name) if path is not None else None
        else:
            kind = "audio" if key == "audio_path" else media_kind(value)
            if kind is None:
                s.notes.append(f"--media-dir: {key} {value!r} is no video, image or audio file name")
                continue
            if _usable(getattr(s, kind)):
                continue  # the output folder (or an earlier look-up) already has it
            path, how = md.find(value)
            if path is not None and media_kind(path.name) != kind:
                path, how = None, f"{path} is not a {kind} file"
        if path is None or kind is None:
            missing += 1
            s.notes.append(f"--media-dir: {key} {value!r} not found: {how}")
            continue
        if _usable(getattr(s, kind)):
            continue
        setattr(s, kind, path)
        found += 1
        s.notes.append(f"--media-dir: {key} {value!r} -> {path} ({how})")
    return found, missing
