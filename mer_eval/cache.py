"""Content-addressed cache (MTEB-style): keys are sha256 over the *content* of every input plus the
model id + weights sha256, the metric/stage version and its parameters, so an unchanged run re-scores
from the cache and any change to inputs, model or parameters misses.

Values are JSON (results) or numpy arrays (embeddings), kept in one SQLite file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np

_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def default_cache_dir() -> Path:
    env = os.environ.get("MER_EVAL_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mer-eval"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, memoised per (path, size, mtime) within the process."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    hit = _SHA_MEMO.get(key)
    if hit:
        return hit
    h = hashlib.sha256()
    with p.open("rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    digest = h.hexdigest()
    _SHA_MEMO[key] = digest
    return digest


def text_sha256(text: Optional[str]) -> Optional[str]:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canon(obj: Any) -> Any:
    if isinstance(obj, Path):
        return {"__file_sha256__": file_sha256(obj)} if obj.is_file() else {"__missing__": str(obj)}
    if isinstance(obj, dict):
        return {str(k): _canon(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canon(v) for v in obj]
    return obj


def stable_hash(obj: Any) -> str:
    """sha256 of a JSON-able object in canonical form (sorted keys; files by content)."""
    return hashlib.sha256(json.dumps(_canon(obj), sort_keys=True, default=str).encode()).hexdigest()


class Cache:
    def __init__(self, directory: Optional[Path] = None):
        self.dir = Path(directory) if directory else default_cache_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "cache.sqlite"
        self._local = threading.local()
        self.hits = 0
        self.misses = 0
        self._owner = threading.get_ident()
        self._pending = 0
        self.defer_commits = False
        with self._conn() as c:
            c.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, kind TEXT, value BLOB)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    @staticmethod
    def key(namespace: str, version: str, model: Any, params: dict, inputs: Any) -> str:
        """Input ``Path`` values are replaced by their content sha256: renaming a file does not miss."""
        blob = json.dumps(
            {"ns": namespace, "v": version, "model": model, "params": _canon(params), "inputs": _canon(inputs)},
            sort_keys=True, default=str,
        ).encode()
        return hashlib.sha256(blob).hexdigest()

    def get(self, key: str) -> Any:
        row = self._conn().execute("SELECT kind, value FROM kv WHERE key=?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        kind, value = row
        if kind == "npy":
            return np.load(io.BytesIO(value), allow_pickle=False)
        return json.loads(value)

    def put(self, key: str, value: Any) -> None:
        if isinstance(value, np.ndarray):
            buf = io.BytesIO()
            np.save(buf, value, allow_pickle=False)
            kind, blob = "npy", buf.getvalue()
        else:
            kind, blob = "json", json.dumps(value, default=str).encode()
        # with ``defer_commits`` (score sets it and calls flush() per chunk) puts are committed in batches of
        # FLUSH_EVERY: one commit per row was a large part of scoring many small samples. The same connection
        # reads its own uncommitted rows; other threads' puts and everyone else's commit at once
        self._conn().execute("INSERT OR REPLACE INTO kv (key, kind, value) VALUES (?, ?, ?)", (key, kind, blob))
        if not self.defer_commits or threading.get_ident() != self._owner:
            self._conn().commit()
            return
        self._pending += 1
        if self._pending >= self.FLUSH_EVERY:
            self.flush()

    FLUSH_EVERY = 500

    def flush(self) -> None:
        """Commit the puts not yet committed (by this thread's connection)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.in_transaction:
            conn.commit()
        self._pending = 0

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM kv").fetchone()[0]


def cache_info(directory: Optional[Path] = None) -> dict[str, Any]:
    """Where the cache is, how many entries it holds (by kind) and its size on disk; opens nothing that
    is not there."""
    d = Path(directory) if directory else default_cache_dir()
    p = d / "cache.sqlite"
    files = [f for f in (p, Path(f"{p}-wal"), Path(f"{p}-shm")) if f.is_file()]
    out: dict[str, Any] = {"path": str(p), "exists": p.is_file(), "bytes": sum(f.stat().st_size for f in files),
                           "entries": 0, "by_kind": {}}
    if p.is_file():
        conn = sqlite3.connect(p, timeout=30)
        try:
            rows = conn.execute("SELECT kind, COUNT(*), COALESCE(SUM(LENGTH(value)), 0) FROM kv GROUP BY kind"
                                ).fetchall()
        except sqlite3.OperationalError as e:  # not a mer-eval cache (no kv table)
            out["error"] = str(e)
            rows = []
        finally:
            conn.close()
        out["by_kind"] = {k: {"entries": int(n), "value_bytes": int(b)} for k, n, b in rows}
        out["entries"] = sum(int(n) for _, n, _ in rows)
    return out


def cache_clear(directory: Optional[Path] = None) -> dict[str, Any]:
    """Delete every entry (the SQLite file and its WAL); returns what was there before."""
    before = cache_info(directory)
    p = Path(before["path"])
    for f in (p, Path(f"{p}-wal"), Path(f"{p}-shm")):
        if f.is_file():
            f.unlink()
    return before
