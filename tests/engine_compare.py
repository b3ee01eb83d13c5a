"""Shared by the engine tests: a run of real MER-Factory outputs, and a byte-for-byte comparison of two scored
output folders (per-sample files, the summary CSV and the parquet table)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

WEIGHT_FREE = ["text_quality", "cross_modal", "abstention", "au_faithfulness"]
WEIGHT_FREE_SETS = ["metrics.cross_modal.embedding_model=null"]  # cm_semantic needs MiniLM's weights
REPO = Path(__file__).resolve().parent.parent


def real_outputs(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "annotations-mer-factory").glob("*.json")) + sorted(
        (REPO / "examples" / "mer-factory").glob("*/*.json"))
    if len(files) < 3:
        pytest.skip("needs real MER-Factory outputs in ../shared/data/annotations-mer-factory")
    return files


def build_real_run(shared_data: Path, root: Path, n: int) -> Path:
    """``n`` MER-Factory sample folders, sample i a copy of real output i mod k (its own id)."""
    files = real_outputs(shared_data)
    for i in range(n):
        src = files[i % len(files)]
        sid = f"s{i:04d}"
        (root / sid).mkdir(parents=True)
        suffix = "au_analysis" if src.name.endswith("au_analysis.json") else "merr_data"
        shutil.copy(src, root / sid / f"{sid}_{suffix}.json")
    return root


def _strip(doc: dict, ignore_cached: bool) -> dict:
    doc.pop("created", None)  # when the file was written
    if ignore_cached:
        for r in doc.get("results", []):
            r.pop("cached", None)
    return doc


def assert_same_outputs(a: Path, b: Path, ids: list[str], ignore_cached: bool = False) -> int:
    """Every sample's ``mer_eval_scores.json`` equal (bar its write time), the summary CSVs equal byte for byte
    and the parquet tables equal. Returns how many sample files were compared."""
    n = 0
    for sid in ids:
        fa, fb = a / sid / "mer_eval_scores.json", b / sid / "mer_eval_scores.json"
        assert fa.is_file() and fb.is_file(), sid
        ja = _strip(json.loads(fa.read_text()), ignore_cached)
        jb = _strip(json.loads(fb.read_text()), ignore_cached)
        assert ja == jb, f"{sid}: per-sample scores differ"
        n += 1
    assert (a / "mer_eval_summary.csv").read_bytes() == (b / "mer_eval_summary.csv").read_bytes()
    pa, pb = pd.read_parquet(a / "scores.parquet"), pd.read_parquet(b / "scores.parquet")
    if ignore_cached:
        pa, pb = pa.drop(columns=["cached"]), pb.drop(columns=["cached"])
    pd.testing.assert_frame_equal(pa, pb)
    return n


def cli_score_with_engine(root: Path, out: Path, engine: str, n: int) -> None:
    """``mer-eval -q score ROOT --engine ENGINE --workers 2 --json`` on the weight-free metrics: exit 0, a JSON
    summary, and ``n`` per-sample score files in ``out``."""
    from click.testing import CliRunner

    from mer_eval.cli import main

    r = CliRunner().invoke(main, ["-q", "score", str(root), "--out", str(out), "--no-cache",
                                  "--metrics", ",".join(WEIGHT_FREE), "--engine", engine, "--workers", "2",
                                  "--json"] + sum((["--set", s] for s in WEIGHT_FREE_SETS), []))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout[r.stdout.index("{"):])
    assert len(list(out.glob("*/mer_eval_scores.json"))) == n


def score_both_ways(shared_data: Path, tmp_path: Path, engine: str, cfg) -> tuple:
    """23 real samples (chunks of 10, 10, 3, each split over 2 workers) scored by the local engine and by
    ``engine``: the same files, counts, means, fingerprints and sample order. Returns both outcomes."""
    from mer_eval.discovery import discover
    from mer_eval.scoring import score_dataset

    root = build_real_run(shared_data, tmp_path / "run", n=23)
    ds = discover(root)
    local = score_dataset(ds, tmp_path / "local", cfg, metrics=WEIGHT_FREE, chunk_size=10)
    other = score_dataset(discover(root), tmp_path / engine, cfg, metrics=WEIGHT_FREE, chunk_size=10,
                          engine=engine, workers=2)
    assert assert_same_outputs(tmp_path / "local", tmp_path / engine, [s.id for s in ds.samples]) == 23
    assert local.section.counts_by_status == other.section.counts_by_status
    assert local.section.means == other.section.means
    assert local.section.fingerprints == other.section.fingerprints
    assert list(local.results) == list(other.results)
    return local, other


# ---- killing a Ray actor mid-run -----------------------------------------------------------------------------

def _descends_from(pid: int, root: int) -> bool:
    for _ in range(64):
        if pid == root:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid <= 1:
            return False
    return False


def kill_first_descendant(matches, killed: list[int], timeout: float = 60.0, ready=lambda: True) -> None:
    """SIGKILL the first process descending from this one whose command line ``matches`` (a predicate on its
    bytes), once ``ready()``; its pid goes into ``killed``. Gives up after ``timeout`` seconds."""
    me = os.getpid()
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ready():
            for d in Path("/proc").iterdir():
                if not d.name.isdigit():
                    continue
                try:
                    cmd = (d / "cmdline").read_bytes()
                except OSError:
                    continue
                if matches(cmd) and _descends_from(int(d.name), me):
                    os.kill(int(d.name), signal.SIGKILL)
                    killed.append(int(d.name))
                    return
        time.sleep(0.01)


def kill_actor_during(actor: bytes, out_dir: Path, written: str, run, timeout: float = 300.0):
    """``(run(), killed pids)``, an ``actor`` process SIGKILLed while ``run`` runs, once a sample file is written:
    an actor dies in the middle of the run."""
    killed: list[int] = []
    th = threading.Thread(target=kill_first_descendant, args=(lambda cmd: actor in cmd, killed, timeout,
                                                              lambda: any(out_dir.glob(written))))
    th.start()
    try:
        return run(), killed
    finally:
        th.join()
