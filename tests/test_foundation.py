"""Issue #2: package layout, data contract, discovery, OpenFace parsing, safety, config, resolver, store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mer_eval.cli import main
from mer_eval.config import ConfigError, load_config
from mer_eval.discovery import detect_kind, discover, discover_tree
from mer_eval.models import resolve
from mer_eval.domain.openface import read_openface_csv
from mer_eval.paths import UnsafePathError, check_sample_id, sanitize_sample_id
from mer_eval.schema import MetricResult, Sample, SampleType, Status
from mer_eval.store import RunLockedError, RunStore, atomic_write_json

REPO = Path(__file__).resolve().parent.parent
MF_FILES = ["gemini_merr.json", "llava-llama3_llama3.2_merr_data.json", "bakllava_llama3.2_merr.json",
            "default_merr_data_MER.json", "default_merr_data_sentiment.json", "default_au_analysis.json"]


# ---- layout ---------------------------------------------------------------------------------------

def test_subpackages_import_through_installed_package(tmp_path):
    """generators/, metrics/, reports/ resolve as mer_eval.*; no bare top-level package is installed."""
    code = (
        "import importlib, importlib.util, sys\n"
        "for n in ('mer_eval.generators', 'mer_eval.metrics', 'mer_eval.reports', 'mer_eval.configs'):\n"
        "    m = importlib.import_module(n); print(n, m.__file__)\n"
        "for bare in ('generators', 'metrics', 'reports', 'configs'):\n"
        "    assert importlib.util.find_spec(bare) is None, bare\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "generators" in out.stdout and "metrics" in out.stdout


@pytest.mark.parametrize("args", [["--help"], ["models"], ["validate", "--help"]])
def test_light_commands_do_not_import_torch(args, tmp_path):
    code = (
        "import sys\n"
        "from mer_eval.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('torch', 'transformers', 'open_clip', 'faster_whisper', 'mediapipe') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def test_every_lazy_command_resolves():
    from mer_eval.cli import LAZY_COMMANDS
    from mer_eval.registry import load_object

    for name, spec in LAZY_COMMANDS.items():
        cmd = load_object(spec)
        assert cmd.name == name, (name, spec)


# ---- data contract ---------------------------------------------------------------------------------

def test_metric_result_refuses_numbers_it_did_not_compute():
    with pytest.raises(ValueError):
        MetricResult(sample_id="a", metric="m", value=None, status=Status.ok, metric_version="1")
    with pytest.raises(ValueError):
        MetricResult(sample_id="a", metric="m", value=float("nan"), status=Status.ok, metric_version="1")
    with pytest.raises(ValueError):  # a failure must not carry a value
        MetricResult(sample_id="a", metric="m", value=0.0, status=Status.error, reason="x", metric_version="1")
    with pytest.raises(ValueError):  # and must say why
        MetricResult(sample_id="a", metric="m", value=None, status=Status.unavailable, metric_version="1")
    r = MetricResult(sample_id="a", metric="m", value=None, status=Status.not_applicable, reason="no audio",
                     metric_version="1")
    assert r.value is None and r.reason == "no audio"


def test_old_result_files_keep_loading():
    """Real files written by each schema version stay readable (tests/data/schema/<version>/)."""
    from mer_eval.schema import SUPPORTED_SCHEMA_VERSIONS, load_evaluation, load_manifest
    from mer_eval.scoring import load_scores

    base = REPO / "tests" / "data" / "schema"
    versions = sorted(p.name for p in base.iterdir() if p.is_dir())
    assert versions, "no stored schema files"
    for v in versions:
        assert v in SUPPORTED_SCHEMA_VERSIONS
        run = base / v
        m = load_manifest(run / "run.json")
        assert m.score is not None and m.score.composite_version
        # stored runs predate the rename (evaluation.json): found through the legacy fallback
        from mer_eval.store import evaluation_path
        evs = sorted(p for p in (evaluation_path(d) for d in run.iterdir() if d.is_dir()) if p is not None)
        assert evs
        for f in evs:
            ev = load_evaluation(f)
            assert ev.results and all(r.status in Status for r in ev.results)
        df = load_scores(run)
        assert {"sample_id", "metric", "value", "status", "reason"} <= set(df.columns)


def test_future_schema_version_is_refused_clearly(tmp_path):
    from mer_eval.schema import load_manifest

    p = tmp_path / "run.json"
    p.write_text(json.dumps({"schema_version": "99.0", "tool_version": "9"}))
    with pytest.raises(ValueError, match="schema_version '99.0'"):
        load_manifest(p)


# ---- discovery on real data ---------------------------------------------------------------------------

def test_all_six_real_mer_factory_jsons_load(shared_data):
    ds = discover(shared_data / "annotations-mer-factory")
    assert ds.kind == "mer-factory-files"
    by_file = {Path(next(iter(s.annotation_files.values()))).name: s for s in ds.samples}
    assert sorted(by_file) == sorted(MF_FILES)
    g = by_file["gemini_merr.json"].annotation
    assert g.transcript == "我哪知道啊？ 我也没有这方面的经验。"
    assert g.audio_description.startswith("Speaker's tone: exasperated")
    assert g.top_aus_intensities["AU07_r"] == 2.78 and g.peak_frame == 88
    llava = by_file["llava-llama3_llama3.2_merr_data.json"].annotation
    assert llava.transcript == "我哪知道啊我也没有这方便的经验" and llava.audio_description is None
    assert llava.video_content is None  # "" in the file means absent
    legacy = by_file["bakllava_llama3.2_merr.json"]
    assert legacy.source == "mer-factory-legacy"
    assert legacy.annotation.detected_emotions == ["sad", "surprise", "fear", "angry"]
    assert legacy.annotation.peak_frame == 36 and legacy.annotation.audio_description is None
    default = by_file["default_merr_data_MER.json"].annotation
    assert default.transcript is None  # "Speech:" followed by tone only: no transcript
    assert "low-pitched" in default.audio_description
    au = by_file["default_au_analysis.json"]
    assert au.type == SampleType.au and au.annotation.visual_expression.startswith("Lips part")


def test_audio_analysis_as_dict_loads(tmp_path, shared_data):
    data = json.loads((shared_data / "annotations-mer-factory" / "gemini_merr.json").read_text())
    data["coarse_descriptions_at_peak"]["audio_analysis"] = {"transcript": "hello there", "tone": "calm, soft"}
    d = tmp_path / "clip1"
    d.mkdir()
    (d / "clip1_merr_data.json").write_text(json.dumps(data))
    (d / "clip1_audio_analysis.json").write_text(json.dumps({"source_path": "x.mp4",
                                                             "audio_analysis": {"error": "429 quota"}}))
    ds = discover(tmp_path)
    assert ds.kind == "mer-factory"
    s = ds.samples[0]
    assert s.annotation.transcript == "hello there" and s.annotation.audio_description == "calm, soft"
    assert any("provider error" in n for n in s.notes)


def test_mer_factory_output_root_layout(tmp_path, shared_data):
    """A MER-Factory OUT root read as it is: <id>/<id>_merr_data.json, <id>.csv, <id>.wav; error_logs is no sample
    folder, but a sample it logs a failure for and that has no result is one generation failed on."""
    d = tmp_path / "default"
    d.mkdir()
    shutil.copy(shared_data / "annotations-mer-factory" / "default_merr_data_MER.json", d / "default_merr_data.json")
    shutil.copy(shared_data / "annotations-mer-factory" / "default_au_analysis.json", d / "default_au_analysis.json")
    shutil.copy(shared_data / "openface" / "openface_default_wmv_aus.csv", d / "default.csv")
    shutil.copy(shared_data / "speech-librivox" / "sense_and_sensibility_01_austen_64kb-0880.wav", d / "default.wav")
    (tmp_path / "error_logs").mkdir()
    (tmp_path / "error_logs" / "x_error.log").write_text("boom")
    (tmp_path / "error_logs" / "default_error.log").write_text("an earlier attempt failed")  # its result is here
    ds = discover(tmp_path)
    assert ds.kind == "mer-factory" and [s.id for s in ds.samples] == ["default", "x"]
    assert ds.by_id()["x"].generation_error == "MER-Factory's error log: boom"
    assert ds.by_id()["default"].generation_error is None
    s = ds.samples[0]
    assert s.type == SampleType.mer and s.openface_csv.name == "default.csv" and s.audio.name == "default.wav"
    assert set(s.annotation_files) == {"mer", "au"}


def test_media_folders_discovered(shared_data):
    faces = discover(shared_data / "faces")
    kinds = {s.id: s.type for s in faces.samples}
    assert kinds["single_face"] == SampleType.mer and kinds["astronaut"] == SampleType.image
    assert kinds["face_noface"] == SampleType.mer and len(faces.samples) == 12
    assert kinds["single_face_jpg"] == SampleType.image  # same stem as single_face.mp4: its own sample
    libri = discover(shared_data / "speech-librivox")
    assert len(libri.samples) == 5 and all(s.reference_transcript for s in libri.samples)
    assert libri.by_id()["sense_and_sensibility_01_austen_64kb-0880"].reference_transcript == \
        "he was not an ill disposed young man"
    jfk = discover(shared_data / "speech-jfk")
    assert jfk.samples[0].reference_transcript.startswith("And so my fellow Americans")
    emo = discover(shared_data / "speech-emotion")
    if len(list((shared_data / "speech-emotion").glob("*.wav"))) < 47:
        pytest.skip("the 47 speech-emotion clips are only in ../shared/data (tests/data/real has 2)")
    assert len(emo.samples) == 47 and all(s.type == SampleType.audio for s in emo.samples)


def test_examples_discovered(examples):
    sets = {ds.root.name: ds for ds in discover_tree(examples)}
    assert set(sets) == {"media", "mer-factory"}
    media = sets["media"].by_id()
    assert media["0-f15-hao-ph"].label == "happy" and media["15-f13-anc-ph"].label == "angry"
    assert media["single_face"].video is not None
    assert all(media[k].reference_transcript for k in media if k.startswith("sense_and"))
    mf = sets["mer-factory"].by_id()
    assert mf["default"].openface_csv is not None and mf["gemini"].annotation.final_summary


def test_manifest_jsonl_and_csv(tmp_path, shared_data):
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(shared_data / "speech-jfk" / "jfk.flac", media / "jfk.flac")
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "jfk", "audio": "media/jfk.flac", "label": "neutral",
                                                  "reference_transcript": "ask not"}) + "\n")
    ds = discover(tmp_path / "m.jsonl")
    assert ds.kind == "manifest" and ds.samples[0].audio == media / "jfk.flac"
    assert ds.samples[0].label == "neutral" and ds.samples[0].reference_transcript == "ask not"
    (tmp_path / "m.csv").write_text("id,audio,label\njfk,media/jfk.flac,happy\n")
    assert discover(tmp_path / "m.csv").samples[0].label == "happy"


# ---- OpenFace ---------------------------------------------------------------------------------------

def test_real_openface_csvs_parse(shared_data):
    a = read_openface_csv(shared_data / "openface" / "OpenFace_Test.csv")
    assert a.n == 100 and a.notes == [] and len(a.au_r) == 17 and "AU28_c" in a.au_c
    assert "face_id" not in a.columns and a.column("success") is not None
    b = read_openface_csv(shared_data / "openface" / "openface_default_wmv_aus.csv")
    assert b.rows_read == 224 and b.n == 223
    assert len(b.notes) == 1 and "truncated" in b.notes[0] and "line 225" in b.notes[0]
    idx = b.row_index_of_frame(222)  # 1-based OpenFace frame numbers
    assert b.data["timestamp"][idx] == pytest.approx(14.733)
    assert b.intensities(idx)["AU25_r"] == pytest.approx(1.94) and b.intensities(idx)["AU26_r"] == pytest.approx(2.08)


# ---- safety ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["../x", "..", "a/b", "/etc/passwd", ".hidden", "", "a\\..\\b", "x..y"])
def test_unsafe_ids_rejected(bad):
    with pytest.raises(UnsafePathError):
        check_sample_id(bad)
    with pytest.raises(ValueError):
        Sample(id=bad)


def test_ids_are_sanitised():
    assert sanitize_sample_id("my clip (1)") == "my_clip_1"
    assert sanitize_sample_id("../../etc") == "etc"


def test_manifest_cannot_reach_outside_root(tmp_path):
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"id": "../../evil", "audio": "a.wav"}) + "\n"
        + json.dumps({"id": "ok", "audio": "/etc/passwd"}) + "\n"
        + json.dumps({"id": "ok2", "audio": "../outside.wav"}) + "\n"
    )
    ds = discover(tmp_path / "m.jsonl")
    assert ds.samples == []
    assert len(ds.notes) == 3 and all("skipped" in n for n in ds.notes)


def test_symlinks_out_of_root_not_followed(tmp_path, shared_data):
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(shared_data / "faces" / "single_face.jpg", root / "in.jpg")
    os.symlink(shared_data / "faces" / "astronaut.png", root / "out.png")
    os.symlink(shared_data / "faces", root / "linked_dir")
    ds = discover(root)
    assert [s.id for s in ds.samples] == ["in"]
    assert any("symlink leads outside" in n for n in ds.notes)


def test_store_refuses_unsafe_ids(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(UnsafePathError):
        store.sample_dir("../escape")
    with pytest.raises(UnsafePathError):
        store.write_error("../../x", "media", "boom")
    # a sample folder that is a link out of the run is refused; a real folder, a link inside and none are fine
    (tmp_path / "elsewhere").mkdir()
    run = tmp_path / "run"
    (run / "real").mkdir(parents=True)
    (run / "leak").symlink_to(tmp_path / "elsewhere")
    (run / "inside").symlink_to(run / "real")
    store = RunStore(run)
    with pytest.raises(UnsafePathError):
        store.sample_dir("leak")
    assert store.sample_dir("real") == run / "real" and store.sample_dir("inside") == run / "inside"
    assert store.sample_dir("new") == run / "new"


# ---- run store --------------------------------------------------------------------------------------

def test_atomic_write_leaves_no_temp_and_lock_excludes_second_writer(tmp_path):
    store = RunStore(tmp_path / "run")
    with store.locked():
        p = store.write_json("s1", "s1_merr_data.json", {"final_summary": "x"})
        assert json.loads(p.read_text()) == {"final_summary": "x"}
        with pytest.raises(RunLockedError, match="being written"):
            with RunStore(tmp_path / "run").locked():
                pass
        code = ("from mer_eval.store import RunStore\n"
                f"with RunStore({str(tmp_path / 'run')!r}).locked(): pass\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode != 0 and "RunLockedError" in out.stderr
    with RunStore(tmp_path / "run").locked():  # released afterwards
        pass
    assert not list((tmp_path / "run").rglob("*.tmp"))
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}


def test_manifest_roundtrip(tmp_path):
    store = RunStore(tmp_path)
    m = store.new_manifest(command="score", seed=3)
    store.write_manifest(m)
    back = store.read_manifest()
    assert back.seed == 3 and back.tool_version and "numpy" in back.package_versions


# ---- config ------------------------------------------------------------------------------------------

def test_bad_config_key_names_key_and_allowed_values(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(sets=["metrics.clip.modle=ViT-L-14"])
    msg = str(e.value)
    assert "metrics.clip.modle" in msg and "model" in msg and "pretrained" in msg
    with pytest.raises(ConfigError) as e:
        load_config(sets=["score.device=tpu"])
    assert "score.device" in str(e.value) and "'cuda'" in str(e.value)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("score:\n  batch_size: 4\n  bogus: 1\n")
    with pytest.raises(ConfigError, match="score.bogus"):
        load_config(cfg_file)
    r = CliRunner().invoke(main, ["models", "--set", "models.nope=1"])
    assert r.exit_code == 2 and "unknown config key 'models.nope'" in r.output


def test_config_layers(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("score:\n  batch_size: 4\n")
    c = load_config(cfg_file, ["score.device=cpu", "metrics.clip.video_frames=3"])
    assert c.score.batch_size == 4 and c.score.device == "cpu" and c.metric_params("clip")["video_frames"] == 3
    assert c.hash() != load_config().hash()


# ---- model resolver ---------------------------------------------------------------------------------

def _fake_hf_model(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"weights")
    return d


def test_resolver_order_and_reasons(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    r = resolve("nli")
    assert not r.available and "not found" in r.reason and str(tmp_path / "hub") in r.reason
    # HF cache layout
    snap = tmp_path / "hub" / "models--cross-encoder--nli-deberta-v3-base" / "snapshots" / "abc"
    _fake_hf_model(snap)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("abc")
    r = resolve("nli")
    assert r.available and r.source == "hf-cache" and r.path == snap and len(r.sha256) == 64
    # MER_EVAL_MODELS_DIR wins over the HF cache
    _fake_hf_model(tmp_path / "models" / "nli")
    monkeypatch.setenv("MER_EVAL_MODELS_DIR", str(tmp_path / "models"))
    assert resolve("nli").source == "env"
    # an explicit path wins over everything; a bad explicit path is an error, not a silent fallback
    _fake_hf_model(tmp_path / "explicit")
    assert resolve("nli", paths={"nli": str(tmp_path / "explicit")}).source == "config"
    bad = resolve("nli", paths={"nli": str(tmp_path / "nowhere")})
    assert not bad.available and "configured path" in bad.reason


def test_no_download_when_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = resolve("clap", allow_download=True)
    assert not r.available and "HF_HUB_OFFLINE=1" in r.reason
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    r = resolve("clap", allow_download=True)
    assert r.available and r.source == "download"


def test_packaged_wheels_resolve_with_sha():
    from mer_eval.models import KNOWN_MODELS, wheel_path

    found = 0
    for key, spec in KNOWN_MODELS.items():
        if spec.wheel is None or wheel_path(*spec.wheel)[0] is None:
            continue
        r = resolve(key)
        assert r.available and r.source == "wheel" and len(r.sha256) == 64, (key, r.reason)
        found += 1
    if not found:
        pytest.skip("no weight-carrying wheel installed (pip install -e '.[offline-models]')")


# ---- CLI ---------------------------------------------------------------------------------------------

def test_validate_examples_prints_tables(examples):
    r = CliRunner().invoke(main, ["validate", str(examples)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    out = r.output
    assert "examples/media" in out and "examples/mer-factory" in out
    assert "single_face" in out and "gemini" in out
    assert "truncated" in out and "line 225" in out  # what was dropped from default.csv is said
    assert "per generate stage" in out and "per metric" in out
    assert "no audio or video file" in out


def test_models_command_lists_every_model():
    r = CliRunner().invoke(main, ["models", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    keys = {row["key"] for row in rows}
    assert {"clip", "clap", "nli", "whisper-base", "face-landmarker", "fer", "smollm2", "minilm"} <= keys
    for row in rows:
        assert row["available"] or row["reason"]
    clip = next(row for row in rows if row["key"] == "clip")
    assert not clip["available"] and "looked in" in clip["reason"]


def test_detect_kind_errors(tmp_path):
    with pytest.raises(ValueError):
        detect_kind(tmp_path / "missing")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError):
        detect_kind(tmp_path / "x.txt")


def test_generated_run_provenance_is_read(tmp_path, shared_data):
    """Our own runs carry mer_eval_meta.json: provider, label-aware prompt, measured FER probabilities."""
    d = tmp_path / "clip"
    d.mkdir()
    shutil.copy(shared_data / "annotations-mer-factory" / "gemini_merr.json", d / "clip_merr_data.json")
    (d / "mer_eval_meta.json").write_text(json.dumps({
        "provider": "offline", "model": "offline-templates-v1",
        "prompts": {"synthesis": "synthesis_emotion_label"},
        "evidence": {"fer": {"happy": 0.9, "sad": 0.1}},
    }))
    s = discover(tmp_path).samples[0]
    a = s.annotation
    assert a.provider == "offline" and a.label_aware is True and a.fer_probabilities == {"happy": 0.9, "sad": 0.1}
    (d / "mer_eval_meta.json").write_text(json.dumps({"prompts": {"synthesis": "synthesis_emotion"}}))
    assert discover(tmp_path).samples[0].annotation.label_aware is False


def test_regular_wheel_install_resolves_subpackages_and_data(tmp_path):
    """A regular (non-editable) install carries every subpackage, config, prompt and template."""
    whl = tmp_path / "whl"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(whl), str(REPO)], capture_output=True, text=True)
    if r.returncode != 0 and "No module named" in r.stderr:
        pytest.skip(f"cannot build a wheel here: {r.stderr[-300:]}")
    assert r.returncode == 0, r.stderr[-2000:]
    # every folder it ships is a package of the configuration (setuptools warns of one that is not: such folders'
    # data "might not be included" by later versions)
    assert "absent from the `packages` configuration" not in r.stderr, r.stderr[-2000:]
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        *map(str, whl.glob("*.whl"))], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    code = (
        "import mer_eval, mer_eval.generators.stages.peaks, mer_eval.generators.providers.base\n"
        "import mer_eval.metrics.nli, mer_eval.reports.html\n"
        "from mer_eval.config import load_config, read_bundled_yaml\n"
        "from mer_eval.composite import load_spec\n"
        "from mer_eval.generators import synthesis\n"
        f"assert mer_eval.__file__.startswith({str(target)!r}), mer_eval.__file__\n"
        "assert load_config().score.composite == 'mer-v2' and load_spec('mer-v1').version == 'mer-v1'\n"
        "assert load_spec('mer-v2').aggregate == 'product'\n"
        "assert read_bundled_yaml('gates/default.yaml')['rules']\n"
        "assert len(synthesis.prompt_hashes()) >= 4\n"
        "import importlib.resources as ir\n"
        "assert ir.files('mer_eval.reports').joinpath('templates/report.html.j2').is_file()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert out.returncode == 0, out.stderr[-2000:]
