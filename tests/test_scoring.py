"""`mer-eval score` end to end: outputs, statuses, composite, cache, real MER-Factory outputs."""

from __future__ import annotations

import json
import shutil

import pandas as pd
from click.testing import CliRunner

from mer_eval.cli import main
from mer_eval.config import load_config
from mer_eval.discovery import Dataset
from mer_eval.schema import Sample, SampleType, Status, load_evaluation, load_manifest
from mer_eval.scoring import MER_FACTORY_COLUMNS, load_scores, score_dataset, score_run

# real file -> the sample folder it goes into (MER-Factory layout <id>/<id>_merr_data.json)
MF = {"gemini_merr.json": "gemini", "llava-llama3_llama3.2_merr_data.json": "llava-llama3_llama3.2",
      "bakllava_llama3.2_merr.json": "bakllava", "default_merr_data_MER.json": "default",
      "default_merr_data_sentiment.json": "default_sentiment", "default_au_analysis.json": "default_au"}


def test_empty_sample_abstained_worst_and_composite_zero(tmp_path):
    ds = Dataset(kind="manifest", root=tmp_path, samples=[Sample(id="empty", type=SampleType.mer)])
    out = score_dataset(ds, tmp_path / "out", load_config())
    rs = {r.metric: r for r in out.results["empty"]}
    assert rs, "every metric must say something"
    # the only numbers are the abstention score (0: nothing answered) and the composite (its worst)
    assert rs["abstained_score"].value == 0.0 and rs["abstained_score"].details["is_abstained"]
    assert rs["composite_score"].status == Status.ok and rs["composite_score"].value == 0.0
    for name, r in rs.items():
        if name in ("abstained_score", "integrity_score", "composite_score"):
            continue
        assert r.value is None and r.status != Status.ok and r.reason, r
    # a summary the type promises is an abstention, not a gap, and counts as the worst value in the composite
    assert rs["conclusion_consistency"].status == Status.abstained
    assert "composite_lenient" not in rs  # retired: it left abstentions out


def test_score_examples_writes_every_output(examples, tmp_path):
    out_dir = tmp_path / "scored"
    r = CliRunner().invoke(main, ["score", str(examples / "mer-factory"), "--out", str(out_dir)],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "composite" in r.output
    summary = pd.read_csv(out_dir / "mer_eval_summary.csv")
    assert list(summary.columns[: len(MER_FACTORY_COLUMNS)]) == MER_FACTORY_COLUMNS
    assert sorted(summary["sample_id"]) == ["default", "gemini", "llava-llama3_llama3.2"]
    assert "asr_wer_status" in summary.columns and "clip_image_score_reason" in summary.columns
    long = load_scores(out_dir)
    assert set(long["status"]) <= {"ok", "unavailable", "not_applicable", "error", "abstained"}
    assert long.loc[long.status != "ok", "value"].isna().all()
    assert long.loc[long.status != "ok", "reason"].notna().all()
    assert long.loc[long.status == "ok", "value"].notna().all()
    # no CLIP/CLAP/NLI weights offline: said, with where we looked
    clip = long[long.metric == "clip_image_score"]
    assert (clip.status.isin(["unavailable", "not_applicable"])).all()
    assert clip[clip.status == "unavailable"].reason.str.contains("looked in").all()
    ev = load_evaluation(out_dir / "gemini" / "mer_eval_scores.json")
    assert ev.composite is not None and ev.composite.composite_version == "mer-v2"
    assert ev.composite.value is not None and ev.composite_lenient is None  # offline, without labels
    m = load_manifest(out_dir / "run.json")
    assert m.score.metric_versions["composite_score"] == "mer-v2" and m.config_hash
    assert sum(m.score.counts_by_status["distinct1"].values()) == 3


def test_rescore_unchanged_run_hits_cache(examples, tmp_path):
    cfg = load_config(sets=["cache.dir=" + str(tmp_path / "cache")])
    first = score_run(examples / "mer-factory", cfg, out_dir=tmp_path / "a", metrics=["text_quality", "asr_wer"])
    again = score_run(examples / "mer-factory", cfg, out_dir=tmp_path / "a", metrics=["text_quality", "asr_wer"])
    assert again.section.cache_hits > 0
    a = {(r.sample_id, r.metric): (r.value, r.status) for rs in first.results.values() for r in rs}
    b = {(r.sample_id, r.metric): (r.value, r.status) for rs in again.results.values() for r in rs}
    assert a == b
    none = score_run(examples / "mer-factory", cfg, out_dir=tmp_path / "b", metrics=["text_quality"],
                     use_cache=False)
    assert none.section.cache_hits == 0


def test_all_real_mer_factory_outputs_score_end_to_end(shared_data, tmp_path):
    """Each real JSON as a MER-Factory sample folder, the Chinese ones included (CER, not WER)."""
    root = tmp_path / "mf"
    for f, sid in MF.items():
        src = shared_data / "annotations-mer-factory" / f
        d = root / sid
        d.mkdir(parents=True)
        suffix = "_au_analysis.json" if "au_analysis" in f else "_merr_data.json"
        shutil.copy(src, d / f"{sid}{suffix}")
    shutil.copy(shared_data / "openface" / "openface_default_wmv_aus.csv", root / "default" / "default.csv")
    # the Chinese clip, with Gemini's transcript taken as the reference for LLaVA's
    ref = json.loads((shared_data / "annotations-mer-factory" / "gemini_merr.json").read_text())
    gem_transcript = ref["coarse_descriptions_at_peak"]["audio_analysis"].splitlines()[0]
    (root / "transcripts.csv").write_text(f"name,transcript\nllava-llama3_llama3.2,{gem_transcript}\n")
    out = score_run(root, load_config(), transcripts=root / "transcripts.csv")
    res = {sid: {r.metric: r for r in rs} for sid, rs in out.results.items()}
    assert len(res) == 6
    llava = res["llava-llama3_llama3.2"]
    assert llava["asr_cer"].status == Status.ok and 0 < llava["asr_cer"].value < 1
    assert llava["asr_wer"].status == Status.not_applicable
    for sid, r in res.items():
        assert r["distinct1"].status in (Status.ok, Status.not_applicable)
        assert r["composite_score"].status in (Status.ok, Status.not_applicable)
    # MER-Factory's own AU text against its own OpenFace CSV is flagged, not presented as independent
    au = res["default"]["au_f1"]
    if au.status == Status.ok:
        assert au.details.get("au_source") == "self"
