"""The run store: per-sample folders in MER-Factory's layout, atomic writes, ``run.json``, a run lock."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator, Optional

from mer_eval import __version__
from mer_eval.paths import check_sample_id, safe_join
from mer_eval.schema import RunManifest, load_manifest

LOCK_NAME = ".mer-eval.lock"
# written by ``score`` before its first output file and removed once run.json is updated: while it is there the
# run's score files may mix a killed attempt with an older one (readers refuse them; a rerun of score fixes it)
SCORE_INCOMPLETE = ".mer-eval-score.incomplete"
# Our per-sample scores and run summary. MER-Factory's tools/evaluate.py writes ``<id>/evaluation.json`` and
# ``evaluation_summary.csv`` with another schema, so mer-eval uses its own names and never writes those.
EVAL_FILE = "mer_eval_scores.json"
SUMMARY_FILE = "mer_eval_summary.csv"
LEGACY_EVAL_FILE = "evaluation.json"  # read (when ours) from run folders scored before the rename
ERROR_DIR = "error_logs"  # MER-Factory's name
LEGACY_ERROR_DIR = "errors"


def is_mer_eval_evaluation(path: Path) -> bool:
    """True when ``path`` is a JSON file written by mer-eval (not MER-Factory's evaluator output)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "schema_version" in data and isinstance(data.get("results"), list)


def evaluation_path(sample_dir: Path) -> Optional[Path]:
    """The mer-eval scores file of a sample folder: ``mer_eval_scores.json``, else a legacy ``evaluation.json``
    when it has mer-eval's schema (a MER-Factory ``evaluation.json`` is not ours and is skipped); None if neither."""
    p = Path(sample_dir) / EVAL_FILE
    if p.is_file():
        return p
    old = Path(sample_dir) / LEGACY_EVAL_FILE
    return old if old.is_file() and is_mer_eval_evaluation(old) else None
TRACKED_PACKAGES = ("numpy", "pandas", "pydantic", "jiwer", "textstat", "torch", "transformers", "open_clip_torch",
                    "faster-whisper", "ctranslate2", "mediapipe", "ai-edge-litert", "av", "scikit-learn")


class RunLockedError(RuntimeError):
    pass


def _umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter before Python 3.13's os)."""
    m = os.umask(0o022)
    os.umask(m)
    return m


def _temp_of(path: str) -> str:
    """This thread's temporary name for ``path``, beside it: ``.<name>.<pid>.<thread>.tmp`` (what
    :meth:`RunStore.remove_stale_temps` and the other ``.*.tmp`` sweeps match). Unique among the live writers: a
    process and thread write one file at a time."""
    parent, name = os.path.split(path)
    return os.path.join(parent, f".{name}.{os.getpid()}.{threading.get_native_id()}.tmp")


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def _open_temp(tmp: str) -> int:
    """Create ``tmp`` exclusively (never through a link someone left there) with mode 0666 under the umask, as
    ``open()`` makes files; its folder is made when missing, and a temp left by a killed process that had this
    pid is replaced."""
    for _ in range(3):
        try:
            return os.open(tmp, _CREATE, 0o666)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(tmp) or ".", exist_ok=True)
        except FileExistsError:
            os.unlink(tmp)
    return os.open(tmp, _CREATE, 0o666)


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write to a temporary file and rename it into place; ``fsync=False`` skips the flush to disk (per-sample
    files of a large run: a crash leaves the old file or the new one, the rename stays atomic). The folder is
    made when missing (tried only then: a large run writes one file into each of 100k sample folders)."""
    path = os.fspath(path)
    tmp = _temp_of(path)
    fd = _open_temp(tmp)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def git_sha() -> Optional[str]:
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    out = {}
    for p in TRACKED_PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            continue
    return out


class RunStore:
    """A run folder: ``OUT/<id>/<id>_merr_data.json`` etc., ``OUT/error_logs/<id>.json``, ``OUT/run.json``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock_fd: Optional[int] = None

    # -- lock ----------------------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator["RunStore"]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = (self.root / LOCK_NAME).read_text().strip() or "another process"
            raise RunLockedError(f"{self.root} is being written by {holder}; wait for it or use another OUT"
                                 ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        self._lock_fd = fd
        self.remove_orphan_temps()
        try:
            yield self
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._lock_fd = None

    def remove_orphan_temps(self, sample_id: str | None = None) -> list[Path]:
        """Delete the temporary files a killed writer left (``.<name>.<random>.tmp`` of :func:`atomic_write_bytes`
        and the parquet / CSV writers) in the run folder and its sample folders. Called with the lock held, so
        no live writer of this run owns one.

        With ``sample_id``, only that sample's folder: called as a worker (re)starts the sample, which no other
        writer of the run touches then. This is what clears the temp file of a worker killed mid-run (a Ray actor
        restarted and its piece run again) without waiting for the next run's lock."""
        gone = []
        if sample_id is not None:
            dirs = [self.sample_dir(sample_id)]
        else:
            dirs = [self.root, *(p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink())]
        for d in dirs:
            if not d.is_dir():
                continue
            for p in d.glob(".*.tmp"):
                if p.is_file() and not p.is_symlink():
                    p.unlink(missing_ok=True)
                    gone.append(p)
        return gone

    # -- paths ---------------------------------------------------------------------------------------
    def sample_dir(self, sample_id: str) -> Path:
        sid = check_sample_id(sample_id)  # one plain path component
        out = self.root / sid
        if not out.is_symlink():  # a real entry of the root (or none yet): inside it, nothing to resolve
            return out
        return safe_join(self.root, sid)  # a link: refused when it leads out of the root

    def sample_file(self, sample_id: str, suffix: str) -> Path:
        """``OUT/<id>/<id><suffix>``, e.g. suffix ``_merr_data.json``."""
        return self.sample_dir(sample_id) / f"{sample_id}{suffix}"

    def error_file(self, sample_id: str) -> Path:
        """``OUT/error_logs/<id>.json`` (MER-Factory's folder name); an old run's ``OUT/errors/<id>.json`` is
        returned when only that exists, so reruns still see (and clear) it."""
        sid = check_sample_id(sample_id)
        p = safe_join(self.root, ERROR_DIR, f"{sid}.json")
        old = safe_join(self.root, LEGACY_ERROR_DIR, f"{sid}.json")
        return old if not p.exists() and old.exists() else p

    # -- writes --------------------------------------------------------------------------------------
    def write_json(self, sample_id: str, name: str, obj: Any) -> Path:
        p = self.sample_dir(sample_id) / name
        atomic_write_json(p, obj)
        return p

    def write_error(self, sample_id: str, stage: str, reason: str, **extra: Any) -> Path:
        self.clear_error(sample_id)  # drops a legacy errors/<id>.json; the new one goes to error_logs/
        p = self.error_file(sample_id)
        atomic_write_json(p, {"sample_id": sample_id, "stage": stage, "reason": reason,
                              "time": datetime.now(timezone.utc).isoformat(), **extra})
        return p

    def clear_error(self, sample_id: str) -> None:
        p = self.error_file(sample_id)
        if p.exists():
            p.unlink()

    # -- manifest ------------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "run.json"

    def read_manifest(self) -> Optional[RunManifest]:
        return load_manifest(self.manifest_path) if self.manifest_path.is_file() else None

    def write_manifest(self, m: RunManifest) -> None:
        atomic_write_text(self.manifest_path, m.model_dump_json(indent=2) + "\n")

    def new_manifest(self, **kw: Any) -> RunManifest:
        return RunManifest(tool_version=__version__, git_sha=git_sha(), package_versions=package_versions(), **kw)
