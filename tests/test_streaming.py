"""Scoring in chunks (issue #12): a run scored two samples at a time, without keeping results in memory, writes
the same per-sample scores, summary CSV and parquet table as one chunk, and its outputs keep the umask's mode."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

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
    for metric in ("composite_score",):
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


def _summary_from_parquet(out) -> str:
    """The summary CSV as the parquet path builds it: wide_summary of each row group, to_csv."""
    import pyarrow.parquet as pq

    from mer_eval.scoring import wide_summary

    f = pq.ParquetFile(out / "scores.parquet")
    groups = [f.read_row_group(i).to_pandas() for i in range(f.num_row_groups)]
    order = list(dict.fromkeys(m for g in groups for m in g["metric"]))
    return "".join(wide_summary(g, order).to_csv(index=False, header=i == 0) for i, g in enumerate(groups))


def test_the_summary_csv_written_while_scoring_is_the_parquet_paths_byte_for_byte(shared_data, tmp_path,
                                                                                   monkeypatch):
    """The summary CSV is written chunk by chunk as the chunks come back (no pandas); it is the file the row
    groups of scores.parquet give, byte for byte, over every family on real MER-Factory outputs."""
    from engine_compare import build_real_run
    from mer_eval import scoring

    root = build_real_run(shared_data, tmp_path / "run", n=23)
    cfg = load_config(sets=["cache.enabled=false"])
    pivots = []
    monkeypatch.setattr(scoring, "wide_summary", lambda *a, **k: pivots.append(a) or pytest.fail("pivoted"))
    score_dataset(discover(root), tmp_path / "out", cfg, chunk_size=10)  # 3 chunks, every built-in family
    monkeypatch.undo()
    assert pivots == []  # the parquet path did not run
    text = (tmp_path / "out" / "mer_eval_summary.csv").read_text(encoding="utf-8")
    assert text == _summary_from_parquet(tmp_path / "out")
    assert len(text.splitlines()) == 24
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_the_summary_falls_back_to_the_parquet_when_a_later_chunk_brings_a_metric(shared_data, tmp_path,
                                                                                  monkeypatch):
    """A metric first seen in a later chunk changes the columns, and a sample with a metric twice has no single
    value: the streamed file is dropped and the summary is built from scores.parquet (the same file either way)."""
    from mer_eval import scoring
    from mer_eval.schema import MetricResult

    root, n = _root(shared_data, tmp_path)
    cfg = load_config(sets=["cache.enabled=false"])
    ids = sorted(s.id for s in discover(root).samples)
    real_score = scoring.ChunkScorer._score

    def late_metric(self, part, progress, keep):
        cr = real_score(self, part, progress, keep)
        if ids[-1] in {r["sample_id"] for r in cr.rows}:  # the last chunk: one more metric, first seen here
            extra = MetricResult.ok(ids[-1], "late_metric", 0.5, "1.0")
            cr.rows.append({**cr.rows[-1], "metric": extra.metric, "value": extra.value, "status": "ok",
                            "reason": None})
            cr.stats.metrics_order["late_metric"] = None
        return cr

    monkeypatch.setattr(scoring.ChunkScorer, "_score", late_metric)
    score_dataset(discover(root), tmp_path / "late", cfg, metrics=WEIGHT_FREE, chunk_size=2)
    text = (tmp_path / "late" / "mer_eval_summary.csv").read_text(encoding="utf-8")
    assert "late_metric" in text.splitlines()[0]
    assert text == _summary_from_parquet(tmp_path / "late")
    assert not list((tmp_path / "late").glob(".*.tmp"))
    assert scoring.summary_csv([{"sample_id": "a", "metric": "m", "value": 1.0, "status": "ok", "reason": None}] * 2,
                               ["m"], header=True) is None  # a metric twice: no single value


def test_a_chunks_rows_travel_as_columns_and_read_back_as_the_results(shared_data, tmp_path):
    """A chunk's long-table rows are columns (LongRows): each row, read back as a dict, is its result's metric,
    value, status, reason and model in LONG_COLUMNS order; they pickle (worker to driver) unchanged, go to parquet
    as the same table as row dicts would, and give the same summary CSV lines."""
    import pickle

    import pyarrow as pa

    from mer_eval import scoring

    root, n = _root(shared_data, tmp_path)
    assert n >= 3
    cfg = load_config(sets=["cache.enabled=false"])
    part = list(discover(root).samples)
    cr = scoring.ChunkScorer(WEIGHT_FREE, cfg, False, tmp_path / "o")(part)
    rows = list(cr.rows)
    results = [(sid, r) for sid, rs in cr.results.items() for r in rs]
    assert len(rows) == len(cr.rows) == len(results) > 20
    for row, (sid, r) in zip(rows, results):
        assert list(row) == scoring.LONG_COLUMNS
        assert (row["sample_id"], row["metric"], row["value"], row["status"], row["reason"], row["metric_version"],
                row["cached"]) == (sid, r.metric, r.value, r.status.value, r.reason, r.metric_version, r.cached)
        assert row["model"] == (r.model.id if r.model else None)
    assert cr.rows[5] == rows[5] and cr.rows[-1] == rows[-1]
    back = pickle.loads(pickle.dumps(cr))
    assert back.rows.columns == cr.rows.columns
    schema = scoring._long_schema()
    assert pa.Table.from_pydict(cr.rows.columns, schema=schema).equals(pa.Table.from_pylist(rows, schema=schema))
    order = list(cr.stats.metrics_order)
    assert scoring.summary_csv(cr.rows, order, header=True) == scoring.summary_csv(rows, order, header=True)
    merged = scoring.merge_chunk_results([cr, back])
    assert list(merged.rows) == rows + rows
