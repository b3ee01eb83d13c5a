"""mer-eval's file names do not collide with MER-Factory's (tools/evaluate.py writes ``<id>/evaluation.json`` and
``evaluation_summary.csv``); errors go to ``error_logs/`` like MER-Factory's; old run folders still load."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner
from fake_servers import ok, status

from mer_eval.cli import main
from mer_eval.schema import Status
from mer_eval.reports.compare import composite_inputs
from mer_eval.store import EVAL_FILE, SUMMARY_FILE, RunStore, evaluation_path

# the shape MER-Factory's tools/evaluate.py writes (another schema than ours)
MF_EVAL = {"sample_id": "gemini", "distinct1": 0.8, "clip_image_score": None, "composite_score": 0.5}


def _scored(examples, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(examples / "mer-factory", run)
    # MER-Factory's evaluator has already run here: its files must survive a mer-eval score of the same folder
    (run / "gemini" / "evaluation.json").write_text(json.dumps(MF_EVAL), encoding="utf-8")
    (run / "evaluation_summary.csv").write_text("sample_id,distinct1\ngemini,0.8\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["score", str(run)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return run


def test_score_never_writes_merfactory_evaluator_names(examples, tmp_path):
    run = _scored(examples, tmp_path)
    assert json.loads((run / "gemini" / "evaluation.json").read_text()) == MF_EVAL
    assert (run / "evaluation_summary.csv").read_text() == "sample_id,distinct1\ngemini,0.8\n"
    assert (run / "gemini" / EVAL_FILE).is_file() and (run / SUMMARY_FILE).is_file()
    assert sorted(pd.read_csv(run / SUMMARY_FILE)["sample_id"]) == ["default", "gemini", "llava-llama3_llama3.2"]
    for sid in ("default", "gemini", "llava-llama3_llama3.2"):
        assert not (run / sid / "evaluation.json").exists() or sid == "gemini"
    assert evaluation_path(run / "gemini") == run / "gemini" / EVAL_FILE


def test_old_runs_load_and_merfactory_evaluation_is_not_read_as_ours(examples, tmp_path):
    run = _scored(examples, tmp_path)
    df = pd.read_parquet(run / "scores.parquet")
    fresh = composite_inputs(run, df)
    # an old run: our schema under the old name -> still read; MER-Factory's file -> skipped, never parsed as ours
    for sid in ("default", "llava-llama3_llama3.2"):
        (run / sid / EVAL_FILE).rename(run / sid / "evaluation.json")
    (run / "gemini" / EVAL_FILE).unlink()
    assert evaluation_path(run / "default") == run / "default" / "evaluation.json"
    assert evaluation_path(run / "gemini") is None  # MER-Factory's evaluation.json is not ours
    old = composite_inputs(run, df)
    assert old and set(old) == set(fresh)
    assert any(old.values()), old


def test_errors_go_to_error_logs_and_old_errors_are_still_seen(tmp_path):
    store = RunStore(tmp_path)
    p = store.write_error("s1", "describe", "boom")
    assert p == tmp_path / "error_logs" / "s1.json" and json.loads(p.read_text())["reason"] == "boom"
    # an old run's errors/<id>.json is found (so a rerun retries it) and replaced by an error_logs/ one
    (tmp_path / "errors").mkdir()
    (tmp_path / "errors" / "s2.json").write_text('{"reason": "old"}', encoding="utf-8")
    assert store.error_file("s2") == tmp_path / "errors" / "s2.json"
    store.write_error("s2", "describe", "new")
    assert not (tmp_path / "errors" / "s2.json").exists()
    assert json.loads((tmp_path / "error_logs" / "s2.json").read_text())["reason"] == "new"
    store.clear_error("s2")
    assert not store.error_file("s2").exists()


# ---- MER-Factory's CLI spellings on generate (main.py's options) -------------------------------------------

FAST_SETS = ["--set", "generate.au_max_frames=12", "--set", "generate.video_frames=2"]


def _gen(args, tmp_path):
    from mer_eval.generators.commands import generate

    return CliRunner().invoke(generate, [*args, "--set", f"cache.dir={tmp_path / 'c'}", *FAST_SETS],
                              env={"COLUMNS": "200"})


def _run_json(out):
    return json.loads((out / "run.json").read_text(encoding="utf-8"))


def test_merfactory_spellings_and_short_flags(examples, tmp_path):
    video = examples / "media" / "single_face.mp4"
    out = tmp_path / "au"
    # python main.py VIDEO OUT -t AU -tk MERR -th 0.9 -pd 20 -c 1 -s -ca  (MER-Factory's spellings, its case)
    r = _gen([str(video), str(out), "-t", "AU", "-tk", "MERR", "-th", "0.9", "-pd", "20", "-c", "1", "-s", "-ca"],
             tmp_path)
    assert r.exit_code == 0, r.output
    gen = _run_json(out)["config"]["generate"]
    assert (gen["type"], gen["task"], gen["threshold"], gen["peak_distance"], gen["concurrency"]) == \
        ("au", "emotion", 0.9, 20, 1)
    assert _run_json(out)["config"]["cache"]["enabled"] is True
    assert (out / "single_face" / "single_face_au_analysis.json").is_file()
    assert "1 done" in r.output and "note:" not in r.output and "empty" not in r.output  # --silent: totals only
    # MER-Factory's --cache reuses what is up to date (mer-eval's default too)
    r = _gen([str(video), str(out), "-t", "au", "-tk", "merr", "-th", "0.9", "-pd", "20", "-s", "-ca"], tmp_path)
    assert r.exit_code == 0 and "0 done, 1 skipped (up to date)" in " ".join(r.output.split()), r.output
    # the long spellings: --type MER --peak_dis 16 --task 'Sentiment Analysis'; the run is redone (new config)
    out2 = tmp_path / "mer"
    r = _gen([str(video), str(out2), "--type", "MER", "--peak_dis", "16", "--task", "Sentiment Analysis",
              "--no-progress"], tmp_path)
    assert r.exit_code == 0, r.output
    gen = _run_json(out2)["config"]["generate"]
    assert (gen["type"], gen["task"], gen["peak_distance"]) == ("mer", "sentiment", 16)
    merr = json.loads((out2 / "single_face" / "single_face_merr_data.json").read_text())
    assert "the overall sentiment is" in merr["final_summary"]


def test_merfactory_spellings_are_checked(examples, tmp_path):
    video = str(examples / "media" / "single_face.mp4")
    for args, why in ((["--type", "MERR"], "'MERR' is not one of"), (["--task", "happy"], "expected emotion"),
                      (["--peak_dis", "5"], "x>=8"), (["-th", "6"], "0.0<=x<=5.0"),
                      (["--cache", "--force"], "give one"),
                      (["-cgm", "gpt-4o", "--provider", "ollama"], "disagree"),
                      (["-otm", "llama3.2", "-ovm", "llava"], "one model per run")):
        r = _gen([video, str(tmp_path / "o"), *args], tmp_path)
        assert r.exit_code == 2 and why in r.output, (args, r.output)
    assert not (tmp_path / "o").exists()  # nothing was run


def test_model_options_pick_the_provider_and_its_model(examples, tmp_path, fake_server):
    # MER-Factory's --chatgpt-model: our openai provider with that model (here a keyless loopback server)
    fake_server.push(status(200, body=json.dumps({"object": "list", "data": [{"id": "my-model"}]})), ok("ok"))
    r = _gen([str(examples / "media" / "single_face.mp4"), str(tmp_path / "o"), "-cgm", "my-model", "--check",
              "--set", f"providers.openai.base_url={fake_server.url}/v1"], tmp_path)
    assert r.exit_code == 0, r.output
    assert "provider openai (my-model) ready" in r.output
    assert fake_server.requests[1].body["model"] == "my-model"


def test_prompts_file_replaces_the_packaged_prompt(examples, tmp_path, fake_server):
    from mer_eval.generators import synthesis

    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(examples / "media" / "15-f13-anc-ph.jpg", inp / "anc.jpg")
    text = ("MY OWN PROMPT. Facial action units: ${au_text}. Classifier: ${fer}.\n"
            'End with: "In conclusion, the core emotional state is [X], and the most likely cause is [Y]."')
    pf = tmp_path / "prompts.json"
    pf.write_text(json.dumps({"synthesis_emotion": text}), encoding="utf-8")
    out = tmp_path / "out"
    r = _gen([str(inp), str(out), "--prompts-file", str(pf), "--no-preflight", "--no-progress",
              "--provider", "openai", "--set", f"providers.openai.base_url={fake_server.url}/v1"], tmp_path)
    assert r.exit_code in (0, 1), r.output
    asked = [json.dumps(q.body) for q in fake_server.requests if q.path.endswith("/chat/completions")]
    mine = [a for a in asked if "MY OWN PROMPT" in a]
    assert len(mine) == 1 and "Facial action units: " in mine[0] and "${au_text}" not in mine[0]
    assert not any("expert in multimodal emotion recognition" in a for a in asked)  # the packaged one is gone
    assert any("expert in the Facial Action Coding System" in a for a in asked)  # the others are kept
    hashes = _run_json(out)["prompt_hashes"]
    import hashlib

    assert hashes["synthesis_emotion.v1.override"] == hashlib.sha256(text.encode()).hexdigest()
    assert "synthesis_emotion.v1" not in hashes and "tone.v1" in hashes
    assert not synthesis._OVERRIDES  # the override ends with the run
    assert "expert in multimodal emotion recognition" in synthesis.render_prompt("synthesis_emotion", {})


def test_bad_prompts_files_are_named_before_anything_runs(examples, tmp_path):
    video = str(examples / "media" / "single_face.mp4")
    cases = {"unknown.json": ('{"synthesis": "x"}', "unknown prompt 'synthesis'; known: au_description"),
             "field.json": ('{"tone": "say ${mood}"}', "unknown field ${mood}; fields: ${au_pseudo_label}"),
             "empty.json": ("{}", "non-empty mapping"), "broken.json": ("{", "not valid JSON"),
             "blank.yaml": ("tone: ''\n", "must be a non-empty string")}
    for name, (body, why) in cases.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
        r = _gen([video, str(tmp_path / "o"), "-pf", str(tmp_path / name)], tmp_path)
        assert r.exit_code == 2 and why in r.output, (name, r.output)
    assert not (tmp_path / "o").exists()


# ---- MER-Factory's sentiment task: recognised from its outputs (they record no task) ------------------------

def _mf_sentiment_run(shared_data, tmp_path):
    src = shared_data / "annotations-mer-factory"
    if not (src / "default_merr_data_sentiment.json").is_file():
        pytest.skip("../shared/data/annotations-mer-factory is not present")
    run = tmp_path / "mf_sentiment"
    (run / "default").mkdir(parents=True)
    shutil.copy(src / "default_merr_data_sentiment.json", run / "default" / "default_merr_data.json")
    (run / "labels.csv").write_text("name,label\ndefault,Positive\n", encoding="utf-8")
    return run


def test_merfactory_sentiment_outputs_are_scored_as_sentiment(shared_data, tmp_path):
    from mer_eval.discovery import discover
    from mer_eval.domain.task import detect_task
    from mer_eval.metrics.cross_modal import CrossModalAgreement
    from mer_eval.metrics.label_agreement import LabelAgreement

    run = _mf_sentiment_run(shared_data, tmp_path)
    (s,) = discover(run).samples
    assert detect_task(s.annotation.final_summary)[0] == "sentiment"
    # the same MER-Factory sample of the emotion task stays an emotion run
    mer = json.loads((shared_data / "annotations-mer-factory" / "default_merr_data_MER.json").read_text())
    assert detect_task(mer["final_summary"])[0] == "emotion"
    # label_agreement's default (task auto): the summary's "the inferred sentiment is Positive" vs the label
    (r,) = LabelAgreement({}).score([s])[s.id]
    assert r.status == Status.ok and r.value == 1.0, r
    assert r.details["task"] == "sentiment" and "concludes a sentiment" in r.details["task_from"]
    agg = LabelAgreement({}).aggregate([s], {s.id: [r]})
    assert agg["task"] == "sentiment" and agg["tasks"] == {"sentiment": 1} and agg["accuracy"] == 1.0
    (r,) = LabelAgreement({}).score([s.model_copy(update={"label": "negative"})])[s.id]
    assert r.value == 0.0
    # forcing the emotion task still says why it cannot score it
    (r,) = LabelAgreement({"task": "emotion"}).score([s])[s.id]
    assert r.status == Status.not_applicable and "'Positive' maps to no canonical emotion" in r.reason
    (r,) = LabelAgreement({"task": "emotion"}).score([s.model_copy(update={"label": "happy"})])[s.id]
    assert r.status == Status.not_applicable and "concludes a sentiment ('positive')" in r.reason
    # cross_modal: compared at valence level (positive vs the sources' valences), not skipped
    out = {x.metric: x for x in CrossModalAgreement({}).score([s])[s.id]}
    v = out["cross_modal_valence_agreement"]
    assert v.status == Status.ok and v.details["task"] == "sentiment" and v.details["concluded_sentiment"] == \
        "positive"
    assert set(v.details["agree_valence"]) and 0.0 <= v.value <= 1.0
    assert out["cross_modal_agreement"].status == Status.not_applicable
    assert "valence level" in out["cross_modal_agreement"].reason


def test_merfactory_sentiment_run_exports_as_sentiment(shared_data, tmp_path, examples):
    from mer_eval.generators.export import export_run

    run = _mf_sentiment_run(shared_data, tmp_path)
    shutil.copy(examples / "media" / "single_face.mp4", run / "default" / "default.mp4")  # a video to export with
    export_run(run, "sharegpt", tmp_path / "sg.json")
    (rec,) = json.loads((tmp_path / "sg.json").read_text())
    assert "overall sentiment (positive, negative or neutral)" in rec["messages"][0]["content"]
    export_run(run, "csv", tmp_path / "x.csv")
    (row,) = pd.read_csv(tmp_path / "x.csv", keep_default_na=False).to_dict("records")
    assert row["conclusion"] == "positive" and row["file_type"] == "mer"


# ---- folder names that sanitise to one id -------------------------------------------------------------------

def test_merfactory_folders_a_b_and_a_underscore_b_keep_two_ids(shared_data, tmp_path):
    """`a b/` and `a_b/` (two real MER-Factory outputs) are two samples with two output folders, never one id."""
    src = shared_data / "annotations-mer-factory"
    if not (src / "default_merr_data_MER.json").is_file():
        pytest.skip("../shared/data/annotations-mer-factory is not present")
    from mer_eval.discovery import discover

    run = tmp_path / "run"
    for folder, f in (("a b", "default_merr_data_MER.json"), ("a_b", "gemini_merr.json")):
        (run / folder).mkdir(parents=True)
        shutil.copy(src / f, run / folder / f"{folder}_merr_data.json")
    ds = discover(run)
    ids = {s.folder.name: s.id for s in ds.samples}
    assert ids["a_b"] == "a_b" and ids["a b"].startswith("a_b-") and len(set(ids.values())) == 2, ids
    assert any("'a_b' is shared with another file name" in n for n in ds.notes), ds.notes
    r = CliRunner().invoke(main, ["score", str(run), "--metrics", "text_quality"])
    assert r.exit_code == 0, r.output
    for folder, sid in ids.items():
        ev = json.loads((run / sid / EVAL_FILE).read_text(encoding="utf-8"))
        assert ev["sample_id"] == sid
    summary = pd.read_csv(run / SUMMARY_FILE)
    assert sorted(summary["sample_id"]) == sorted(ids.values())
    # the two summaries differ, so their scores came from their own folders
    by_id = summary.set_index("sample_id")
    assert by_id.loc["a_b", "distinct1"] != by_id.loc[ids["a b"], "distinct1"]
