"""Sample ids and paths: nothing is ever read or written outside the input and output roots."""

from __future__ import annotations

import re
from pathlib import Path

_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$")
_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9._\-]+")


class UnsafePathError(ValueError):
    """A sample id or path that would leave its root."""


def check_sample_id(sample_id: str) -> str:
    """Accept an id only if it is one plain path component (no separators, no ``..``)."""
    if not isinstance(sample_id, str) or not _ID_OK.match(sample_id) or ".." in sample_id:
        raise UnsafePathError(
            f"sample id {sample_id!r} is not allowed: ids are one path component of letters, digits, "
            f"'.', '_' or '-', not starting with '.' or '-', without '..'"
        )
    return sample_id


def sanitize_sample_id(raw: str) -> str:
    """Turn a file stem (or any name) into a safe id: other characters become '_'."""
    s = _ID_BAD_CHARS.sub("_", str(raw)).strip("._-")
    s = s.replace("..", "_")
    if not s:
        raise UnsafePathError(f"cannot make a sample id from {raw!r}")
    return check_sample_id(s[:200])


def is_within(path: Path, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
        return True
    except ValueError:
        return False


def safe_join(root: Path, *parts: str) -> Path:
    """Join ``parts`` under ``root``; refuse absolute parts, ``..`` and symlinks that lead out."""
    root = Path(root)
    for p in parts:
        pp = Path(p)
        if pp.is_absolute() or any(x == ".." for x in pp.parts):
            raise UnsafePathError(f"path part {p!r} would leave {root}")
    out = root.joinpath(*parts)
    if out.exists() or out.is_symlink():
        if not is_within(out, root):
            raise UnsafePathError(f"{out} resolves outside {root} (symlink?)")
    return out


def resolve_media_path(value: str, base: Path, roots: list[Path]) -> Path:
    """Resolve a media path named in a manifest relative to ``base``; it must stay under one of ``roots``."""
    p = Path(value)
    if not p.is_absolute():
        p = base / p
    if not any(is_within(p, r) for r in roots):
        raise UnsafePathError(f"{value!r} resolves to {p.resolve()}, outside {', '.join(map(str, roots))}")
    return p
