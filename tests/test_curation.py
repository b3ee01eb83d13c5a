"""Curation in the gate on real MER-Factory outputs: near-duplicates (a real sample copied under a new id, and
a copy whose summary differs by one word), per-label caps / minimums, label histograms, human decisions."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mer_eval.gates import (GateError, append_review, find_duplicates, gate_run, jaccard, load_gate, minhash,
                            read_review, shingles)
from score_fixtures import build_run, score, shared_or_skip

SRC = "default_merr_data_MER"


def _copy_sample(run: Path, src: str, new: str, summary_edit=None) -> None:
    d = run / new
    d.mkdir()
    for f in (run / src).iterdir():
        if f.name.startswith(src) and f.is_file():
            shutil.copy2(f, d / f.name.replace(src, new, 1))
    if summary_edit:
        p = d / f"{new}_merr_data.json"
        data = json.loads(p.read_text(encoding="utf-8"))
        data["final_summary"] = summary_edit(data["final_summary"])
        p.write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture(scope="module")
def dup_run(tmp_path_factory):
    shared = shared_or_skip()
    run = build_run(shared, tmp_path_factory.mktemp("cur") / "run")
    _copy_sample(run, SRC, "copy_exact")  # same peak frame bytes, same texts
    # a different peak frame (own bytes) and a summary with one word changed: only the text says duplicate
    _copy_sample(run, SRC, "copy_reworded", summary_edit=lambda t: t.replace("surprise", "astonishment", 1))
    from PIL import Image
    with Image.open(run / "copy_reworded" / "copy_reworded_peak_frame.png") as im:
        im.rotate(90).save(run / "copy_reworded" / "copy_reworded_peak_frame.png")
    return score(run, shared)


def rows(run):
    with (run / "gate.csv").open(encoding="utf-8", newline="") as f:
        return {r["sample_id"]: r for r in csv.DictReader(f)}


def test_minhash_estimates_jaccard_on_real_summaries(dup_run):
    from mer_eval.discovery import discover

    s = {x.id: x.annotation.final_summary for x in discover(dup_run).samples}
    a, b, c = (shingles(s[k]) for k in (SRC, "copy_reworded", "gemini_merr"))
    j_ab, j_ac = jaccard(a, b), jaccard(a, c)
    assert 0.9 <= j_ab < 1.0 and j_ac < 0.3
    ma, mb, mc = minhash(a), minhash(b), minhash(c)
    assert abs(float((ma == mb).mean()) - j_ab) < 0.15 and abs(float((ma == mc).mean()) - j_ac) < 0.15


def test_gate_marks_near_duplicates_and_keeps_one(dup_run, tmp_path):
    res = gate_run(dup_run, None, ["composite_score >= 0"])
    r = rows(dup_run)
    group = [SRC, "copy_exact", "copy_reworded"]
    kept = [k for k in group if r[k]["is_near_duplicate_issue"] == "False"]
    assert len(kept) == 1, {k: r[k]["why"] for k in group}
    for k in group:
        if k not in kept:
            assert r[k]["is_near_duplicate_issue"] == "True" and r[k]["decision"] == "exclude"
            assert r[k]["near_duplicate_of"] == kept[0]
    assert "identical media" in r["copy_exact"]["failed"] or "identical media" in r[SRC]["failed"]
    assert "summary Jaccard" in r["copy_reworded"]["failed"] or "summary Jaccard" in r[kept[0]]["failed"] \
        or r["copy_reworded"]["decision"] == "include"
    # unrelated real samples are not duplicates
    for k in ("gemini_merr", "llava_merr", "bakllava_merr", "lv0870"):
        assert r[k]["is_near_duplicate_issue"] == "False"
    g = json.loads((dup_run / "gate.json").read_text())
    assert g["counts"]["near_duplicates"] == 2 and len(g["near_duplicates"]) == 2
    assert g["label_histogram"]["before"]["surprise"] == 3 and g["label_histogram"]["after"]["surprise"] == 1
    assert res.counts()["near_duplicates"] == 2


def test_find_duplicates_threshold_is_respected(dup_run):
    from mer_eval.discovery import discover

    ss = [s for s in discover(dup_run).samples if s.id in (SRC, "copy_reworded")]
    assert "copy_reworded" in find_duplicates(ss, {SRC: 1.0}, jaccard_min=0.9) or SRC in find_duplicates(
        ss, {SRC: 1.0}, jaccard_min=0.9)
    assert find_duplicates(ss, {}, jaccard_min=0.999) == {}


def test_label_caps_minimums_and_console(dup_run, tmp_path):
    from mer_eval.reports.commands import gate_cmd

    y = tmp_path / "g.yaml"
    y.write_text("rules:\n  - composite_score >= 0\ncuration:\n  max_per_label: {angry: 1}\n"
                 "  min_per_label: {disgust: 2, '*': 1}\n")
    out = CliRunner().invoke(gate_cmd, [str(dup_run), "--rules", str(y)])
    assert out.exit_code == 0, out.output
    r = rows(dup_run)
    angry = [k for k in ("gemini_merr", "llava_merr") if r[k]["label"] == "angry"]
    assert len(angry) == 2
    capped = [k for k in angry if r[k].get("is_label_cap_issue") == "True"]
    assert len(capped) == 1 and r[capped[0]]["decision"] == "exclude"
    assert "labels before gating:" in out.output and "labels after gating:" in out.output
    assert "warning: label 'disgust': 0 included, min_per_label is 2" in out.output
    g = json.loads((dup_run / "gate.json").read_text())
    assert g["label_histogram"]["after"]["angry"] == 1 and g["curation"]["max_per_label"] == {"angry": 1}


def test_human_decisions_beat_rules(dup_run):
    run = dup_run
    gate_run(run, None, ["composite_score >= 0"])
    excluded = next(k for k, v in rows(run).items() if v["decision"] == "exclude")
    included = next(k for k, v in rows(run).items() if v["decision"] == "include")
    append_review(run, {"sample_id": excluded, "action": "accept", "who": "tester", "when": "t1"})
    append_review(run, {"sample_id": included, "action": "reject", "who": "tester", "when": "t2"})
    try:
        gate_run(run, None, ["composite_score >= 0"])
        r = rows(run)
        assert r[excluded]["decision"] == "include" and r[excluded]["decided_by"] == "human"
        assert r[excluded]["why"].startswith("include (human): accepted by tester")
        assert r[included]["decision"] == "exclude" and r[included]["why"].startswith("exclude (human)")
        assert load_gate(run)[excluded] is True and load_gate(run)[included] is False
        assert read_review(run)[excluded]["decision"] == "accept"
    finally:
        (run / "review.jsonl").unlink()
    (run / "review.jsonl").write_text("not json\n")
    with pytest.raises(GateError, match="not JSON"):
        gate_run(run, None, ["composite_score >= 0"])
    (run / "review.jsonl").unlink()
