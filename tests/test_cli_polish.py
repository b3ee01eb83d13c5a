"""CLI behaviour users of lm-eval / promptfoo expect: clean errors, --limit, --json, -q/-v, a cache command,
and output files written with the usual permissions (umask), on the bundled real examples."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from mer_eval.cli import main


@pytest.fixture
def mf_run(examples, tmp_path):
    src = examples / "mer-factory"
    if not src.is_dir():
        pytest.skip("examples/mer-factory is absent")
    dest = tmp_path / "mf"
    shutil.copytree(src, dest, symlinks=True)
    return dest


def _runner():
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 keeps stderr apart by default
        return CliRunner()


def test_unknown_metric_is_one_clean_line(mf_run):
    r = _runner().invoke(main, ["score", str(mf_run), "--metrics", "clip,foo"])
    assert r.exit_code == 2
    assert r.exception is None or isinstance(r.exception, SystemExit)
    err = r.stderr.strip()
    assert "Traceback" not in r.output + err
    assert err.count("\n") == 0, err
    assert "'foo'" in err and "known:" in err and "clip" in err and "text_quality" in err
    assert not (mf_run / "scores.parquet").exists()


def test_misspelt_provider_key_names_the_allowed_keys(mf_run):
    from mer_eval.config import ConfigError, ProviderConfig, load_config

    with pytest.raises(ConfigError) as e:
        load_config(None, ["providers.openai.api_kye_env=null"])
    msg = str(e.value)
    assert "(none)" not in msg
    assert "did you mean 'api_key_env'" in msg
    for k in ProviderConfig.model_fields:
        assert k in msg
    with pytest.raises(ConfigError) as e:
        load_config(None, ["providers.opnai.model=x"])
    assert "did you mean 'openai'" in str(e.value) and "offline" in str(e.value)
    # and through the CLI: a usage error, no traceback
    r = _runner().invoke(main, ["validate", str(mf_run), "--set", "providers.openai.timeout=5"])
    assert r.exit_code == 2 and "timeout_s" in r.stderr and "Traceback" not in r.stderr


def test_score_limit_and_json(mf_run, tmp_path):
    from mer_eval.discovery import discover

    order = [s.id for s in discover(mf_run).samples]
    assert len(order) >= 3
    out = tmp_path / "scores"
    env = {"MER_EVAL_CACHE_DIR": str(tmp_path / "cache")}
    r = _runner().invoke(main, ["-q", "score", str(mf_run), "--out", str(out), "--metrics", "text_quality",
                                "--limit", "2", "--json"], env=env)
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)  # stdout is the JSON alone
    assert data["n_samples"] == 2 and data["out_dir"] == str(out)
    assert sorted(data["composite"]) == sorted(order[:2])
    metrics = {m["metric"]: m for m in data["metrics"]}
    assert metrics["distinct2"]["n"] == 2 and 0 < metrics["distinct2"]["mean"] <= 1
    import pandas as pd

    df = pd.read_parquet(out / "scores.parquet")
    assert sorted(df["sample_id"].unique()) == sorted(order[:2])
    # the written files get the usual permissions under the process umask, not mkstemp's 0600
    old = os.umask(0o022)
    os.umask(old)
    for p in (out / "scores.parquet", out / "run.json"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~old, p


def test_atomic_writes_respect_umask(tmp_path):
    from mer_eval.store import atomic_write_text

    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o022)
        atomic_write_text(tmp_path / "b.txt", "y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_validate_limit_and_json(examples):
    r = _runner().invoke(main, ["validate", str(examples), "--limit", "3", "--json"])
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["n_samples"] == 3 == sum(len(d["samples"]) for d in data["datasets"])
    d0 = data["datasets"][0]
    assert d0["stages"] and d0["metrics"]
    for fam, v in d0["metrics"].items():
        assert v["ready"] + sum(len(ids) for ids in v["cannot_run"].values()) == d0["n_samples"], fam
    full = json.loads(_runner().invoke(main, ["validate", str(examples), "--json"]).stdout)
    assert full["n_samples"] > 3
    first = [s["id"] for d in full["datasets"] for s in d["samples"]][:3]
    assert [s["id"] for d in data["datasets"] for s in d["samples"]] == first


def test_quiet_and_verbose(mf_run, tmp_path):
    env = {"MER_EVAL_CACHE_DIR": str(tmp_path / "cache")}
    args = ["score", str(mf_run), "--out", str(tmp_path / "o"), "--metrics", "text_quality", "--limit", "1"]
    loud = _runner().invoke(main, args, env=env)
    quiet = _runner().invoke(main, ["-q"] + args, env=env)
    assert loud.exit_code == 0 and quiet.exit_code == 0, (loud.stderr, quiet.stderr)
    assert "distinct2" in loud.stdout
    assert quiet.stdout.strip() == ""
    import logging

    r = _runner().invoke(main, ["-vv", "metrics", "--json"])
    assert r.exit_code == 0 and logging.getLogger().level == logging.DEBUG
    _runner().invoke(main, ["metrics", "--json"])
    assert logging.getLogger().level == logging.WARNING


def test_cache_info_and_clear(mf_run, tmp_path):
    cache = tmp_path / "cache"
    env = {"MER_EVAL_CACHE_DIR": str(cache)}
    r = _runner().invoke(main, ["cache", "info", "--json"], env=env)
    assert r.exit_code == 0 and json.loads(r.stdout)["exists"] is False
    s = _runner().invoke(main, ["-q", "score", str(mf_run), "--out", str(tmp_path / "o"), "--metrics",
                                "text_quality", "--limit", "2"], env=env)
    assert s.exit_code == 0, s.stderr
    info = json.loads(_runner().invoke(main, ["cache", "info", "--json"], env=env).stdout)
    assert info["exists"] and info["entries"] > 0 and info["bytes"] > 0
    assert info["path"] == str(cache / "cache.sqlite")
    from mer_eval.cache import Cache

    assert len(Cache(cache)) == info["entries"]
    text = _runner().invoke(main, ["cache", "info"], env=env).stdout
    assert f"entries: {info['entries']}" in text and str(cache) in text
    no = _runner().invoke(main, ["cache", "clear"], env=env, input="n\n")
    assert no.exit_code == 1 and (cache / "cache.sqlite").exists()
    yes = _runner().invoke(main, ["cache", "clear", "--yes"], env=env)
    assert yes.exit_code == 0 and f"cleared {info['entries']} entries" in yes.stdout
    after = json.loads(_runner().invoke(main, ["cache", "info", "--json"], env=env).stdout)
    assert after["exists"] is False and after["entries"] == 0


def test_probe_limit(mf_run, tmp_path):
    from mer_eval.cli import run_probe
    from mer_eval.config import load_config

    cfg = load_config(None, [f"cache.dir={tmp_path / 'cache'}"])
    res, out = run_probe(mf_run, cfg, tmp_path / "probe", kinds=["degen"], metrics=["text_quality"], n_boot=0,
                         limit=2)
    data = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    assert data["n_originals"] == 2


def test_explicit_unreadable_inputs_are_one_line(tmp_path):
    """A --label-file / --transcripts the user named that cannot be read: one line naming it, exit 1."""
    from click.testing import CliRunner

    from mer_eval.cli import main

    mf = Path(__file__).resolve().parent.parent / "examples" / "mer-factory"
    lab = tmp_path / "labels.csv"
    lab.write_bytes(b"name,label\n\xff\xfe,x\n")
    tr = tmp_path / "transcripts.csv"
    tr.write_text("foo,bar\n", encoding="utf-8")
    for args in (["validate", str(mf), "--label-file", str(lab)],
                 ["score", str(mf), "--out", str(tmp_path / "o"), "--transcripts", str(tr), "--metrics",
                  "text_quality"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 1, r.output
        assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)
        assert ("not UTF-8" in r.output) if "validate" in args else ("needs columns 'name,transcript'" in r.output)


def test_a_named_label_or_transcript_file_that_matches_no_sample_is_an_error(tmp_path, shared_data):
    """Before, a --label-file whose names match no sample scored the real outputs without labels (label_match
    not_applicable everywhere, label accuracy never measured) and only a note nobody printed said so."""
    from click.testing import CliRunner

    from mer_eval.cli import main
    from mer_eval.discovery import DiscoveryError, discover, discover_tree

    examples = Path(__file__).resolve().parent.parent / "examples"
    mf = examples / "mer-factory"
    wrong = tmp_path / "labels.csv"
    wrong.write_text("name,label\nclip_0001,happy\nclip_0002,sad\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["score", str(mf), "--out", str(tmp_path / "o"), "--label-file", str(wrong),
                                  "--metrics", "text_quality,label_agreement"])
    assert r.exit_code == 1 and not (tmp_path / "o").exists()
    flat = " ".join(r.output.split())
    assert ("labels.csv: label file matches none of the 3 samples: its names (2, e.g. clip_0001, clip_0002) are "
            "neither a sample id (e.g. default, gemini, llava-llama3_llama3.2) nor a media file's stem") in flat
    one = tmp_path / "one.csv"
    one.write_text("name,label\ngemini,happy\nclip_0002,sad\n", encoding="utf-8")
    ds = discover(mf, label_file=one)  # one match is the user's file applied (the rest are notes)
    assert ds.labels_matched == 1 and {s.id: s.label for s in ds.samples}["gemini"] == "happy"
    assert "labels: 1 of 3 samples matched in one.csv" in ds.notes
    # a tree of datasets: the file is checked against all of them together (here it labels mer-factory only)
    assert [d.labels_matched for d in discover_tree(examples, label_file=one)][-1] == 1
    with pytest.raises(DiscoveryError, match="label file matches none of the"):
        discover_tree(examples, label_file=wrong)
    # reference transcripts for the real LibriVox speech, named after other files
    speech = shared_data / "speech-librivox"
    refs = tmp_path / "refs.csv"
    refs.write_text("name,transcript\nutt_1,hello there\n", encoding="utf-8")
    with pytest.raises(DiscoveryError, match=r"refs.csv: transcript file matches none of the 5 samples"):
        discover(speech, transcripts=refs)
    ok = discover(speech, transcripts=speech / "transcription")
    assert ok.transcripts_matched == 5 and all(s.reference_transcript for s in ok.samples)


def test_text_from_the_data_is_printed_as_text_not_rich_markup(mf_run, tmp_path):
    """A MER-Factory error log next to the real outputs whose line holds '[/]' and rich tags (a traceback can): its
    reason reaches the score table, validate's notes and the report. Before, rich read it as markup and `score`
    died of a MarkupError after writing the scores; now it is printed as the text it is."""
    (mf_run / "error_logs").mkdir()
    line = "Error processing clip9: bad token [/] and [bold red]LOUD[/bold red] <script>alert(1)</script>"
    (mf_run / "error_logs" / "clip9_error.log").write_text(line + "\nTraceback ...\n", encoding="utf-8")
    env = {"COLUMNS": "250"}
    r = _runner().invoke(main, ["score", str(mf_run), "--metrics", "text_quality,abstention", "--no-cache"], env=env)
    assert r.exit_code == 0, (r.output, r.exception)
    assert "bad token [/] and [bold red]LOUD" in r.output
    v = _runner().invoke(main, ["validate", str(mf_run)], env=env)
    assert v.exit_code == 0, (v.output, v.exception)
    assert "[bold red]LOUD[/bold red]" in v.output
    rep = _runner().invoke(main, ["report", str(mf_run), "-o", str(tmp_path / "r.html")], env=env)
    assert rep.exit_code == 0, (rep.output, rep.exception)
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)" in html and "<script>alert(1)" not in html
