"""Scoring in chunks (issue #12): a run scored two samples at a time, without keeping results in memory, writes
the same per-sample scores, summary CSV and parquet table as one chunk, and its outputs keep the umask's mode."""

from __future__ import annotations

import json
import shutil

import pandas as pd

from mer_eval.config import load_config
from mer_eval.discovery import discover
from mer_eval.scoring import load_scores, score_dataset

MF = {"gemini_merr.json": "gemini", "llava-llama3_llama3.2_merr_data.json": "llava",
      "default_merr_data_MER.json": "default_mer", "bakllava_llama3.2_merr.json": "bakllava"}
WEIGHT_FREE = ["text_quality", "cross_modal", "abstention", "au_faithfulness"]


def _root(shared_data, tmp_path):
    root = tmp_path / "mf"
    n = 0
    for f, sid in MF.items():
        src = shared_data / "annotations-mer-factory" / f
        if not src.is_file():
            continue
        (root / sid).mkdir(parents=True)
        shutil.copy(src, root / sid / f"{sid}_merr_data.json")
        n += 1
    return root, n


def test_chunked_scoring_equals_one_chunk(shared_data, tmp_path):
    root, n = _root(shared_data, tmp_path)
    assert n >= 3, "need at least 3 real MER-Factory outputs"
    cfg = load_config(sets=["cache.enabled=false"])
    one = score_dataset(discover(root), tmp_path / "one", cfg, metrics=WEIGHT_FREE)
    many = score_dataset(discover(root), tmp_path / "many", cfg, metrics=WEIGHT_FREE, chunk_size=2,
                         keep_results=False)
    key = ["sample_id", "metric"]
    a = load_scores(tmp_path / "one").sort_values(key).reset_index(drop=True)
    b = load_scores(tmp_path / "many").sort_values(key).reset_index(drop=True)
    cols = ["sample_id", "metric", "value", "status", "reason"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    sa = pd.read_csv(tmp_path / "one" / "mer_eval_summary.csv").sort_values("sample_id").reset_index(drop=True)
    sb = pd.read_csv(tmp_path / "many" / "mer_eval_summary.csv").sort_values("sample_id").reset_index(drop=True)
    assert list(sa.columns) == list(sb.columns)
    pd.testing.assert_frame_equal(sa, sb)
    for sid in MF.values():
        if (root / sid).is_dir():
            ja = json.loads((tmp_path / "one" / sid / "mer_eval_scores.json").read_text())
            jb = json.loads((tmp_path / "many" / sid / "mer_eval_scores.json").read_text())
            assert ja["composite"]["value"] == jb["composite"]["value"]
    # the run section is the same, counted chunk by chunk
    assert one.section.counts_by_status == many.section.counts_by_status
    # (embeddings batched differently may differ in the 8th digit)
    assert one.section.means.keys() == many.section.means.keys()
    assert all(abs((one.section.means[k] or 0) - (many.section.means[k] or 0)) < 1e-6 for k in one.section.means)
    # results read back from the parquet (no details), in the same order of samples
    assert list(many.results) == [s.id for s in discover(root).samples]
    got = {(r.sample_id, r.metric): (r.status, r.value) for rs in many.results.values() for r in rs}
    want = {(r.sample_id, r.metric): (r.status, r.value) for rs in one.results.values() for r in rs}
    assert got.keys() == want.keys()
    assert all(got[k][0] == want[k][0] and (got[k][1] is None) == (want[k][1] is None) for k in want)
    assert all(abs(got[k][1] - want[k][1]) < 1e-6 for k in want if want[k][1] is not None)
    assert not list((tmp_path / "many").glob(".*.tmp"))  # no temporary file left behind


def test_a_streamed_run_summaries_read_only_the_composites(shared_data, tmp_path, monkeypatch):
    """The console and --json summaries of a streamed run equal a kept run's, and read only the composite rows of
    scores.parquet: reading every result back cost ~1 ms/sample in the driver (10 s of a 10k run)."""
    import io

    from rich.console import Console

    from mer_eval.scoring import _ParquetResults
    from mer_eval.summary import print_score_summary, score_summary_json

    root, n = _root(shared_data, tmp_path)
    assert n >= 3, "need at least 3 real MER-Factory outputs"
    cfg = load_config(sets=["cache.enabled=false"])
    fams = WEIGHT_FREE + ["conclusion", "grounding"]  # enough coverage for a composite
    one = score_dataset(discover(root), tmp_path / "one", cfg, metrics=fams)
    many = score_dataset(discover(root), tmp_path / "many", cfg, metrics=fams, chunk_size=2, keep_results=False)
    assert isinstance(many.results, _ParquetResults)

    def every_result(self):
        raise AssertionError("a summary read every result back")

    monkeypatch.setattr(_ParquetResults, "items", every_result)
    for metric in ("composite_score", "composite_lenient"):
        by_id = {sid: (st, v, why) for sid, st, v, why in one.composites(metric)}
        got = many.composites(metric)
        assert len(got) == n and {sid for sid, *_ in got} == set(by_id)
        for sid, st, v, why in got:
            assert (st, why) == (by_id[sid][0], by_id[sid][2]) and (v is None) == (by_id[sid][1] is None)
            assert v is None or abs(v - by_id[sid][1]) < 1e-6
    assert any(v is not None for _, _, v, _ in many.composites())  # values read, not only Nones
    ja, jb = score_summary_json(one)["composite"], score_summary_json(many)["composite"]
    assert ja.keys() == jb.keys() and len(ja) == n
    assert all((ja[k]["status"], ja[k]["reason"]) == (jb[k]["status"], jb[k]["reason"]) for k in ja)

    def printed(o) -> list[str]:
        buf = io.StringIO()
        print_score_summary(Console(file=buf, width=300, color_system=None), o)
        # bar the title (its seconds) and the last line (the out dir)
        return [x for x in buf.getvalue().splitlines() if "scores: " not in x and not x.startswith("wrote ")]

    pa = printed(one)
    assert any(x.startswith("composite (") and "top " in x for x in pa)
    assert pa == printed(many)
