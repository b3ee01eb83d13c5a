"""Issue #9 on real data: abstention is a defect, the gate fails closed, self-checks count nowhere."""

from __future__ import annotations

import json
import shutil

import pytest


from mer_eval.config import load_config
from mer_eval.discovery import Dataset, discover
from mer_eval.gates import gate_run
from mer_eval.generators import corrupt
from mer_eval.schema import Annotation, Sample, SampleType, Status, load_manifest
from mer_eval.scoring import score_dataset

TEXT = ["text_quality", "label_agreement", "conclusion", "grounding", "au_faithfulness", "abstention",
        "cross_modal"]


def _gemini(examples) -> Sample:
    return next(s for s in discover(examples / "mer-factory").samples if s.id == "gemini")


def _by(outcome, sid):
    return {r.metric: r for r in outcome.results[sid]}


def test_abstaining_is_never_better_than_answering_wrong(examples, tmp_path):
    """An empty annotation, a summary that concludes nothing and one that concludes the wrong emotion (the
    real Gemini summary, flipped): before, the first two were included and the third excluded."""
    g = _gemini(examples)
    empty = Sample(id="empty", type=SampleType.mer, annotation=Annotation(top_aus_intensities={"AU06_r": 1.5}))
    silent = g.model_copy(deep=True)
    silent.id = "no_conclusion"
    # a summary that describes and names no emotion (it restates the scene description)
    silent.annotation.final_summary = g.annotation.visual_objective
    wrong = corrupt.make_flip(g, seed=0)[0].sample
    wrong.id = "wrong_emotion"
    ds = Dataset(kind="manifest", root=tmp_path, samples=[g, empty, silent, wrong])
    out = score_dataset(ds, tmp_path / "run", load_config(), metrics=TEXT)
    comp = {sid: _by(out, sid)["composite_score"] for sid in ("gemini", "empty", "no_conclusion", "wrong_emotion")}
    assert all(c.status == Status.ok for c in comp.values())  # the strict composite judges every one
    assert comp["empty"].value == 0.0
    assert comp["no_conclusion"].value < comp["wrong_emotion"].value < comp["gemini"].value
    nc = _by(out, "no_conclusion")
    assert nc["conclusion_consistency"].status == Status.abstained
    assert nc["cross_modal_agreement"].status == Status.abstained
    assert nc["abstained_score"].value == 0.0
    assert "conclusion_consistency" in nc["composite_score"].details["abstained"]
    # no lenient composite any more: it left abstentions out, and so scored this sample above the wrong answer
    assert "composite_lenient" not in nc
    for sid in ("gemini", "empty", "no_conclusion", "wrong_emotion"):
        assert [r.metric for r in out.results[sid]].count("composite_score") == 1
    res = gate_run(tmp_path / "run", "default")
    dec = {d.sample_id: d for d in res.decisions}
    assert dec["gemini"].decision == "include"
    assert dec["empty"].decision == "exclude" and dec["no_conclusion"].decision == "exclude"
    assert any("abstained" in f for f in dec["no_conclusion"].failed)


def test_removing_every_conclusion_lowers_the_strict_composite(examples, tmp_path):
    """Before: stripping "the core emotional state is X" moved the composite from 100 to null."""
    base = [s for s in discover(examples / "mer-factory").samples]
    stripped = []
    for s in base:
        t = s.model_copy(deep=True)
        t.annotation.final_summary = "\n".join(
            ln for ln in s.annotation.final_summary.splitlines() if "core emotional state" not in ln.lower())
        stripped.append(t)
    a = score_dataset(Dataset(kind="manifest", root=tmp_path, samples=base), tmp_path / "a", load_config(),
                      metrics=TEXT)
    b = score_dataset(Dataset(kind="manifest", root=tmp_path, samples=stripped), tmp_path / "b", load_config(),
                      metrics=TEXT)
    for s in base:
        ca, cb = _by(a, s.id)["composite_score"], _by(b, s.id)["composite_score"]
        assert ca.status == cb.status == Status.ok and cb.value < 0.7 * ca.value, (s.id, ca.value, cb.value)
        ab = _by(b, s.id)["abstained_score"]
        assert ab.value == 0.5 and "no concluding statement" in ab.details["missing"][0]["what"]
    res = gate_run(tmp_path / "b", "default")
    assert res.included == []  # answered: abstained_score >= 1 fails for every one (sent to review at best)


def test_offline_provider_does_not_grade_its_own_answers(examples, tmp_path):
    """The offline provider votes the summary's emotion from the FER class; that FER agreement (cm_fer) and
    the AU-rule agreement it voted from are self-checks: nowhere counted, and run.json's means say so."""
    from mer_eval.generators.pipeline import run_generate

    media = tmp_path / "media"
    media.mkdir()
    for f in ("0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg"):  # no labels: the provider votes its conclusion
        shutil.copy(examples / "media" / f, media / f)
    run = tmp_path / "run"
    cfg = load_config()
    run_generate(media, run, cfg, progress=False)
    ds = discover(run)
    assert all(s.provenance.conclusion_from for s in ds.samples)
    out = score_dataset(ds, run, cfg, metrics=TEXT)
    for s in ds.samples:
        r = _by(out, s.id)
        assert r["cm_fer"].status == Status.ok and r["cm_fer"].evidence.independent is False
        assert "voted" in r["cm_fer"].evidence.reason
        assert "fer_probabilities" in s.provenance.conclusion_from
        cc = r["conclusion_support"]
        assert cc.status == Status.ok and "fer" in cc.details["left_out"]
        comp = r["composite_score"]
        assert "cm_fer" not in comp.details.get("counted", [])
    man = load_manifest(run / "run.json")
    assert man.score.means["cm_fer"] is None and man.score.left_out["cm_fer"]["n"] == len(ds.samples)
    # the console table's mean is the same: the self-checks are counted as such, not averaged (before: a mean)
    from mer_eval.summary import metric_table_rows

    row = next(r for r in metric_table_rows(out) if r["metric"] == "cm_fer")
    assert row["ok"] == len(ds.samples) and row["mean"] is None and row["self_checks"] == len(ds.samples)
    # an outcome without the streamed rows computes them from its results, the same way
    streamed, out.metric_rows = out.metric_rows, None
    assert metric_table_rows(out) == streamed
    assert "voted" in next(iter(man.score.left_out["cm_fer"]["reasons"]))
    assert man.score.fingerprints["conclusion_consistency"].code_hash


def test_probe_of_a_generated_offline_run_never_credits_self_checks(examples, tmp_path):
    """On our own offline run the metrics that only re-check the template's inputs measure nothing: the probe
    gives them no AUROC where neither side was measured (not 0.5: a tie of two unmeasured values is not a
    measurement) and at most 0.5 where only a twin was, never a discriminating number."""
    from mer_eval.cli import run_probe
    from mer_eval.generators.pipeline import run_generate

    media = tmp_path / "media"
    media.mkdir()
    for f in ("0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "single_face.mp4"):
        shutil.copy(examples / "media" / f, media / f)
    run = tmp_path / "run"
    cfg = load_config()
    run_generate(media, run, cfg, progress=False)
    res, out = run_probe(run, cfg, metrics=TEXT, n_boot=0)
    pj = json.loads((out / "probe.json").read_text())
    assert pj["n_originals"] == 3
    for m in ("cm_fer", "au_faithfulness", "grounding"):  # self-checks of a template summary
        for k, c in pj["auroc"][m].items():
            if k == "all" or not c["n_pairs"]:
                continue
            assert c["measured_original"] == 0, (m, k)
            if c["measured_twin"] == 0:
                assert c["auroc"] is None and c["ci95"] is None and c["win_rate"] is None, (m, k)
                assert "self-check" in c["not_measured"], (m, k, c["not_measured"])
            else:
                assert c["auroc"] <= 0.5 and c["not_measured"] is None, (m, k)
    # the degenerate and generic twins are still caught by what the template cannot fake
    assert pj["auroc"]["repetition_rate"]["degen"]["auroc"] == 1.0


def _answers(examples) -> dict[str, Sample]:
    """The real Gemini output, and three copies of it that answer wrongly (a short summary concluding
    happiness, which nothing in the clip supports), conclude nothing, or leave the summary empty."""
    g = _gemini(examples)
    out = {"orig": g}
    for sid, summary in (("wrong", "He smiles at the camera. In conclusion, the core emotional state is happiness."),
                         ("silent", g.annotation.visual_objective), ("empty", "")):
        s = g.model_copy(deep=True)
        s.id = sid
        s.annotation.final_summary = summary
        out[sid] = s
    return out


def test_run_means_never_rise_by_not_answering(examples, tmp_path):
    """run.json's means and the console's: a run whose second sample abstains (concludes nothing, or has an
    empty summary) never has a higher mean than the same run whose second sample answers wrongly. Before, the
    abstention was left out of the mean (conclusion_consistency 0.643 against 0.594 for the wrong answer)."""
    from mer_eval.scoring import _output_index
    from mer_eval.summary import metric_table_rows, score_summary_json

    a = _answers(examples)
    cfg = load_config(sets=["metrics.cross_modal.embedding_model=null"])
    runs = {}
    for name in ("wrong", "silent", "empty"):
        ds = Dataset(kind="manifest", root=tmp_path, samples=[a["orig"], a[name]])
        runs[name] = score_dataset(ds, tmp_path / name, cfg, metrics=TEXT)
    means = {k: load_manifest(tmp_path / k / "run.json").score.means for k in runs}
    compared = 0
    for k in ("silent", "empty"):
        man = load_manifest(tmp_path / k / "run.json").score
        abst = man.abstained_in_means
        assert abst["conclusion_consistency"] == {"n": 1, "counted_as": 0.0}
        hib = {m: up for m, (_, up) in _output_index(runs[k].families).items()}
        for m in abst:  # every output the second sample abstained on
            v, w = means[k][m], means["wrong"].get(m)
            if v is None or w is None:
                continue
            assert (v <= w + 1e-9) if hib[m] else (v >= w - 1e-9), (k, m, v, w)  # never better than wrong
            compared += 1
        rows = {r["metric"]: r for r in metric_table_rows(runs[k])}
        assert rows["conclusion_consistency"]["abstained"] == 1
        assert rows["conclusion_consistency"]["mean"] == pytest.approx(means[k]["conclusion_consistency"])
        js = {r["metric"]: r for r in score_summary_json(runs[k])["metrics"]}
        assert js["conclusion_consistency"]["abstained"] == 1
    assert compared >= 10
    # the empty summary abstains on the text-quality outputs too; fkgl has no worst value: no mean, said so
    emp = load_manifest(tmp_path / "empty" / "run.json").score
    assert emp.abstained_in_means["fkgl"] == {"n": 1, "counted_as": None} and emp.means["fkgl"] is None
    assert emp.abstained_in_means["distinct1"] == {"n": 1, "counted_as": 0.0}
    assert emp.means["distinct1"] == pytest.approx(_by(runs["empty"], "gemini")["distinct1"].value / 2)


def test_gate_rule_fails_an_empty_summary_it_used_to_skip(examples, tmp_path):
    """A rule on cross_modal_agreement or on a text-quality output: an empty summary of a mer sample is not
    answering (abstained: fails as the worst value), not a gap (not_applicable: skipped). Before, the empty
    summary was included while the answer that concluded nothing was excluded."""
    a = _answers(examples)
    ds = Dataset(kind="manifest", root=tmp_path, samples=[a["orig"], a["silent"], a["empty"]])
    cfg = load_config(sets=["metrics.cross_modal.embedding_model=null"])
    score_dataset(ds, tmp_path / "run", cfg, metrics=TEXT)
    for rule in ("cross_modal_agreement >= 0.3", "distinct1 >= 0.3", "label_match is ok"):
        res = gate_run(tmp_path / "run", None, rules=[rule])
        dec = {d.sample_id: d for d in res.decisions}
        if rule != "label_match is ok":  # (no labels here: a status rule on it is skipped for everyone)
            assert dec["empty"].decision == "exclude", (rule, dec["empty"])
            assert any("abstained" in f for f in dec["empty"].failed), (rule, dec["empty"].failed)


def test_integrity_is_not_claimed_for_outputs_that_recorded_nothing(examples, tmp_path):
    """MER-Factory's outputs record no generation provenance: whether an answer was cut is unknown, so
    integrity_score is not_applicable with that reason (before: 1.0, passing `integrity_score >= 1`)."""
    from mer_eval.metrics.abstention import NOT_RECORDED

    ds = discover(examples / "mer-factory")
    out = score_dataset(ds, tmp_path / "run", load_config(), metrics=["abstention"])
    for s in ds.samples:
        r = _by(out, s.id)["integrity_score"]
        assert r.status == Status.not_applicable and r.value is None and r.reason == NOT_RECORDED, s.id
    # a rule on it judges none of them: skipped with the reason, so nothing was checked (unknown: excluded)
    res = gate_run(tmp_path / "run", None, rules=["integrity_score >= 1"])
    assert len(res.decisions) == len(ds.samples)
    for d in res.decisions:
        assert list(d.issues.values()) == [None] and NOT_RECORDED in d.skipped[0], d
        assert d.unknown and d.decision == "exclude", d


def test_a_check_that_crashed_is_never_renormalised_away(examples, tmp_path, monkeypatch):
    """A family that fails on one real sample (status error): before, the composite renormalised over the checks
    that survived and the default gate included the sample as if it had passed the failed one."""
    from mer_eval.metrics.grounding import Grounding

    ds = discover(examples / "mer-factory")
    cfg = load_config(sets=["score.batch_size=1", "cache.enabled=false"])  # one sample per batch: one fails
    clean = score_dataset(ds, tmp_path / "clean", cfg, metrics=TEXT)
    assert _by(clean, "gemini")["composite_score"].status == Status.ok
    assert {d.sample_id: d.decision for d in gate_run(tmp_path / "clean", "default").decisions}["gemini"] == "include"

    real = Grounding.compute

    def crash_on_gemini(self, samples):
        if any(s.id == "gemini" for s in samples):
            raise RuntimeError("grounding crashed on this sample")
        return real(self, samples)

    monkeypatch.setattr(Grounding, "compute", crash_on_gemini)
    out = score_dataset(discover(examples / "mer-factory"), tmp_path / "run", cfg, metrics=TEXT)
    g = _by(out, "gemini")
    assert g["grounding"].status == Status.error and g["specificity"].status == Status.error
    comp = g["composite_score"]
    assert comp.status == Status.error and comp.value is None
    assert comp.reason.startswith("component_error: a check the composite needs failed; grounding: error: "
                                  "RuntimeError: grounding crashed on this sample")
    assert "specificity: error" in comp.reason and "conclusion_consistency" not in comp.reason
    saved = json.loads((tmp_path / "run" / "gemini" / "mer_eval_scores.json").read_text())
    assert saved["composite"]["flag"] == "component_error" and saved["composite"]["value"] is None
    for sid in ("default", "llava-llama3_llama3.2"):  # the other samples' composites are untouched
        assert _by(out, sid)["composite_score"].value == _by(clean, sid)["composite_score"].value
    dec = {d.sample_id: d for d in gate_run(tmp_path / "run", "default").decisions}
    assert dec["gemini"].decision == "exclude" and dec["gemini"].unknown
    assert any(f.startswith("scoring_errors: composite_score is error: component_error") for f in dec["gemini"].failed)
    assert {dec[s].decision for s in ("default", "llava-llama3_llama3.2")} == {"include"}
    # a rule on the failed metric itself: before skipped (the sample then passed on the other rules)
    res = gate_run(tmp_path / "run", None, ["specificity >= 0.5", "abstained_score >= 1"])
    d = {x.sample_id: x for x in res.decisions}["gemini"]
    assert d.decision == "exclude" and not d.skipped
    assert len(d.failed) == 1 and d.failed[0].endswith("(the check failed)")
    assert d.failed[0].startswith("specificity_ge_0_5: specificity is error: RuntimeError: grounding crashed on "
                                  "this sample at test_fail_closed.py:")


def test_an_input_that_could_not_be_read_is_said_not_dropped_in_silence(examples, tmp_path):
    """A real MER-Factory output cut short (an interrupted copy): before, score and gate went on with the other two
    ("2 of 2 samples included") and nothing they printed or wrote said a third folder was there."""
    from click.testing import CliRunner

    from mer_eval.cli import main

    run = tmp_path / "run"
    shutil.copytree(examples / "mer-factory", run)
    p = run / "gemini" / "gemini_merr_data.json"
    p.write_bytes(p.read_bytes()[:1500])
    r = CliRunner().invoke(main, ["score", str(run), "--metrics", ",".join(TEXT), "--no-cache"],
                           env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    flat = " ".join(r.output.split())
    assert "input: 1 note(s) from reading it, 1 of them input(s) skipped: not scored, in no gate or export" in flat
    assert "gemini: gemini_merr_data.json: not valid JSON" in flat
    meta = json.loads((run / "run.json").read_text())
    assert meta["extra"]["input_notes_total"] == 1 and meta["extra"]["input_notes"][0].startswith(
        "gemini: gemini_merr_data.json: not valid JSON")
    res = gate_run(run, "default")
    assert sorted(d.sample_id for d in res.decisions) == ["default", "llava-llama3_llama3.2"]
    assert res.warnings[-1].startswith("1 input(s) skipped when the run was scored (unreadable, or not a sample): "
                                       "in no decision; e.g. gemini: gemini_merr_data.json: not valid JSON")
    assert json.loads((run / "gate.json").read_text())["warnings"] == res.warnings
    shutil.copy(examples / "mer-factory" / "gemini" / "gemini_merr_data.json", p)  # repaired and scored again
    r = CliRunner().invoke(main, ["score", str(run), "--metrics", ",".join(TEXT), "--no-cache"])
    assert r.exit_code == 0 and "input:" not in r.output
    assert json.loads((run / "run.json").read_text())["extra"]["input_notes"] == []
    assert not any("skipped when the run was scored" in w for w in gate_run(run, "default").warnings)
