"""``mer-eval generate`` end to end on real media with the offline provider (and a scripted text-only one).

One generate run (module fixture) covers: a face video with sound, the silent face video, the no-face
video, a face photo (image type), a speech file (audio type) and a corrupt video; the tests then check
the MER-Factory layout, discovery, scoring, resume, --force, error files and provider-error handling.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mer_eval.generators.pipeline import META_NAME, run_generate

from mer_eval.config import load_config
from mer_eval.discovery import discover
from mer_eval.schema import SampleType

from conftest import SHARED_DATA as SHARED  # noqa: E402 (../shared/data, else tests/data/real)
FAST = ["generate.au_max_frames=12", "generate.asr_model=whisper-tiny.en", "generate.asr_language=en",
        "generate.video_frames=2", "generate.concurrency=2"]
MERR_KEYS = {"source_path", "audio_path", "chronological_emotion_peaks", "overall_peak_frame_info",
             "coarse_descriptions_at_peak", "final_summary", "mer_eval_provider", "mer_eval_model"}
COARSE_KEYS = {"visual_expression", "visual_objective", "audio_analysis", "video_content"}


def _cfg(tmp: Path, *extra: str):
    return load_config(None, FAST + [f"cache.dir={tmp / 'cache'}", *extra])


def _input(tmp: Path) -> Path:
    inp = tmp / "in"
    inp.mkdir()
    for rel in ("faces/single_face.mp4", "faces/WolfgangLanger_Pexels.mp4", "faces/no_face.mp4",
                "faces/0-f15-hao-ph.jpg", "speech-jfk/jfk.flac"):
        shutil.copy(SHARED / rel, inp / Path(rel).name)
    (inp / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a real video stream" * 40)
    return inp


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    tmp = tmp_path_factory.mktemp("gen")
    inp = _input(tmp)
    out = tmp / "out"
    cfg = _cfg(tmp)
    summary = run_generate(inp, out, cfg, progress=False)
    return {"tmp": tmp, "inp": inp, "out": out, "cfg": cfg, "summary": summary}


def _json(p: Path) -> dict:
    return json.loads(p.read_text(encoding="utf-8"))


def test_summary_and_types(run, shared_data):
    s = run["summary"]
    assert s["total"] == 6
    assert s["types"] == {"single_face": "mer", "WolfgangLanger_Pexels": "mer", "no_face": "mer",
                          "0-f15-hao-ph": "image", "jfk": "audio", "corrupt": "mer"}
    assert "corrupt" in s["failures"]
    for sid in ("single_face", "WolfgangLanger_Pexels", "0-f15-hao-ph", "jfk"):
        assert sid not in s["failures"], s["failures"].get(sid)
    assert s["done"] + s["failed"] == 6 and s["skipped"] == 0
    run_json = _json(run["out"] / "run.json")
    assert run_json["provider"] == "offline" and run_json["counts_by_status"]["done"] == s["done"]
    assert run_json["prompt_hashes"] and run_json["config_hash"] == s["config_hash"]
    assert run_json["finished"] and run_json["tool_version"] and run_json["package_versions"]
    assert run_json["input"] == str(run["inp"].resolve())


def test_corrupt_media_gets_an_error_file_and_the_run_goes_on(run):
    err = _json(run["out"] / "error_logs" / "corrupt.json")
    assert err["stage"] == "media" and err["reason"]
    assert not (run["out"] / "corrupt" / "corrupt_merr_data.json").exists()
    # score sees the sample generation failed on (not a silently smaller run): no annotation, the log's reason
    from mer_eval.discovery import discover

    failed = discover(run["out"]).by_id()["corrupt"]
    assert failed.generation_error.startswith("stage media: ") and failed.type.value == "mer"


def test_face_video_with_sound_mer_factory_layout(run):
    d = run["out"] / "single_face"
    data = _json(d / "single_face_merr_data.json")
    assert set(data) == MERR_KEYS
    assert set(data["coarse_descriptions_at_peak"]) == COARSE_KEYS
    for f in ("single_face.wav", "single_face.csv", "single_face_peak_frame.png", META_NAME):
        assert (d / f).is_file(), f
    info = data["overall_peak_frame_info"]
    assert set(info) == {"frame_number", "timestamp", "top_aus_intensities"}
    assert isinstance(info["frame_number"], int) and info["frame_number"] >= 1
    # the AU text is exactly the measured peak AUs
    from mer_eval.domain.facs import au_text
    assert data["coarse_descriptions_at_peak"]["visual_expression"] == au_text(info["top_aus_intensities"])
    # offline: no scene text invented; the reason is in the meta
    assert data["coarse_descriptions_at_peak"]["visual_objective"] == ""
    assert data["coarse_descriptions_at_peak"]["video_content"] == ""
    meta = _json(d / META_NAME)
    assert "no vision model" in meta["absent"]["visual_objective"]
    assert meta["provider"] == "offline" and meta["au_source"] in ("mediapipe", "openface", "pyfeat")
    assert meta["inputs_sha256"]["video"] and meta["config_hash"] == run["summary"]["config_hash"]
    assert meta["prompt_hashes"]
    assert "the core emotional state is" in data["final_summary"]
    assert data["audio_path"].endswith("single_face.wav")
    assert data["coarse_descriptions_at_peak"]["audio_analysis"]


def test_silent_video_has_no_audio_analysis(run):
    d = run["out"] / "WolfgangLanger_Pexels"
    data = _json(d / "WolfgangLanger_Pexels_merr_data.json")
    assert data["audio_path"] == ""
    assert data["coarse_descriptions_at_peak"]["audio_analysis"] == ""
    assert not (d / "WolfgangLanger_Pexels.wav").exists()
    meta = _json(d / META_NAME)
    assert meta["absent"]["audio_analysis"]
    assert data["coarse_descriptions_at_peak"]["visual_expression"]  # a face is there


def test_no_face_video_never_invents_aus(run):
    s = run["summary"]
    if "no_face" in s["failures"]:
        assert "face" in s["failures"]["no_face"]["reason"].lower()
        return
    data = _json(run["out"] / "no_face" / "no_face_merr_data.json")
    assert data["overall_peak_frame_info"]["top_aus_intensities"] == {}
    assert data["coarse_descriptions_at_peak"]["visual_expression"] == ""
    assert data["chronological_emotion_peaks"] == []
    meta = _json(run["out"] / "no_face" / META_NAME)
    assert "face" in meta["absent"]["visual_expression"].lower()


def test_image_and_audio_types(run):
    img = _json(run["out"] / "0-f15-hao-ph" / "0-f15-hao-ph_image_analysis.json")
    assert set(img) == {"source_path", "au_text_description", "llm_au_description", "image_visual_description",
                        "final_summary", "mer_eval_provider", "mer_eval_model"}
    assert img["image_visual_description"] == ""
    assert img["au_text_description"] and "core emotional state is" in img["final_summary"]
    aud = _json(run["out"] / "jfk" / "jfk_audio_analysis.json")
    assert set(aud) == {"source_path", "audio_analysis", "mer_eval_provider", "mer_eval_model"}
    first = aud["audio_analysis"].splitlines()[0].lower()
    assert "fellow americans" in first  # Whisper's transcript is the first line, as MER-Factory's evaluator reads


def test_outputs_are_discoverable_and_score(run):
    ds = discover(run["out"])
    assert ds.kind == "mer-factory"
    by = ds.by_id()
    assert by["single_face"].type == SampleType.mer and by["0-f15-hao-ph"].type == SampleType.image
    assert by["jfk"].type == SampleType.audio
    assert by["corrupt"].generation_error and not by["corrupt"].annotation_files  # failed: no result to read
    sf = by["single_face"]
    assert sf.video is not None and sf.video.name == "single_face.mp4"  # found through run.json's input
    assert sf.openface_csv is not None and sf.peak_frame_image is not None
    assert sf.annotation.provider == "offline" and sf.annotation.final_summary
    assert by["jfk"].annotation.transcript and "americans" in by["jfk"].annotation.transcript.lower()
    from mer_eval.scoring import score_run

    outcome = score_run(run["out"], run["cfg"], metrics=["text_quality", "label_agreement"])
    assert set(outcome.results) == set(by)
    assert (run["out"] / "single_face" / "mer_eval_scores.json").is_file()


def test_resume_skips_then_force_redoes(run):
    if _json(run["out"] / "run.json").get("score") is None:
        from mer_eval.scoring import score_run

        score_run(run["out"], run["cfg"], metrics=["text_quality"])
    scored = _json(run["out"] / "run.json")["score"]
    again = run_generate(run["inp"], run["out"], run["cfg"], progress=False)
    assert again["done"] == 0
    assert _json(run["out"] / "run.json").get("score") == scored  # nothing changed: scores kept
    assert again["skipped"] == run["summary"]["done"]
    assert set(again["failures"]) == set(run["summary"]["failures"])
    forced = run_generate(run["inp"], run["out"], run["cfg"], force=True, progress=False)
    assert forced["skipped"] == 0 and forced["done"] == run["summary"]["done"]
    meta = _json(run["out"] / "single_face" / META_NAME)
    assert meta["stages"]["au"]["reused"] is False and meta["stages"]["audio"]["reused"] is False
    # without --force, a rerun after a config change reuses the stages whose inputs and config still match
    changed = _cfg(run["tmp"], "generate.threshold=1.2")
    part = run_generate(run["inp"], run["out"], changed, progress=False)
    assert part["skipped"] == 0 and part["done"] == run["summary"]["done"]
    meta = _json(run["out"] / "single_face" / META_NAME)
    assert meta["stages"]["au"]["reused"] is True and meta["stages"]["peaks"]["reused"] is False


def _one_photo_generated(tmp_path: Path, name: str) -> tuple[Path, Path, object]:
    """A real face photo as INPUT/<name>.jpg, annotated once (offline provider): (INPUT, OUT, config)."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(SHARED / "faces" / "0-f15-hao-ph.jpg", inp / f"{name}.jpg")
    out = tmp_path / "out"
    cfg = _cfg(tmp_path)
    assert run_generate(inp, out, cfg, progress=False)["done"] == 1
    return inp, out, cfg


def test_changed_input_is_redone(tmp_path):
    inp, out, cfg = _one_photo_generated(tmp_path, "a")
    shutil.copy(SHARED / "faces" / "0-f1-su-ph.jpg", inp / "a.jpg")  # same name, other content
    s = run_generate(inp, out, cfg, progress=False)
    assert s["done"] == 1 and s["skipped"] == 0
    # label-aware synthesis when a label file appears: inputs changed (label), redone, label in the JSON
    (inp / "labels.csv").write_text("name,label\na,sad\n")
    s = run_generate(inp, out, cfg, progress=False)
    assert s["done"] == 1
    data = _json(out / "a" / "a_image_analysis.json")
    assert data["ground_truth_label"] == "sad"
    assert "the core emotional state is sad" in data["final_summary"]
    from mer_eval.store import RunLockedError, RunStore

    with RunStore(out).locked(), pytest.raises(RunLockedError):
        run_generate(inp, out, cfg, progress=False)


def _scripted(fail_purpose=None, text_only=False):
    from mer_eval.generators.providers.base import Capability, Provider, ProviderError

    class Scripted(Provider):
        name = "scripted"
        capabilities = frozenset({Capability.text}) if text_only else frozenset(Capability)
        default_model = "scripted-1"

        async def _call(self, req):
            if req.purpose == fail_purpose:
                raise ProviderError("HTTP 500 upstream exploded", status=500, retryable=False)
            if req.purpose == "synthesis":
                return ("The measured cues were weighed. In conclusion, the core emotional state is happy, "
                        "and the most likely cause is the smile."), {}
            return f"scripted {req.purpose} text", {}

    from mer_eval.config import ProviderConfig

    return Scripted(ProviderConfig(model="scripted-1", max_retries=0), cache=None)


def test_provider_error_is_never_annotation_text(tmp_path):
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(SHARED / "faces" / "0-f15-hao-ph.jpg", inp / "p.jpg")
    out = tmp_path / "out"
    cfg = _cfg(tmp_path)
    ok = run_generate(inp, out, cfg, progress=False, provider=_scripted())
    assert ok["done"] == 1
    assert _json(out / "p" / "p_image_analysis.json")["image_visual_description"] == "scripted visual_description text"
    from mer_eval.scoring import score_run

    score_run(out, cfg, metrics=["text_quality"])
    assert _json(out / "run.json")["score"] is not None
    s = run_generate(inp, out, cfg, progress=False, provider=_scripted(fail_purpose="synthesis"), force=True)
    assert s["failed"] == 1 and s["failures"]["p"]["stage"] == "synthesis"
    # the scored annotation is gone: run.json must not keep scores that describe it
    assert _json(out / "run.json").get("score") is None
    assert "exploded" in _json(out / "error_logs" / "p.json")["reason"]
    assert not (out / "p" / "p_image_analysis.json").exists()  # the earlier result is not left standing
    for f in (out / "p").glob("*.json"):
        assert "exploded" not in f.read_text(encoding="utf-8"), f


def test_capability_missing_falls_back_and_says_so(tmp_path):
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(SHARED / "faces" / "0-f15-hao-ph.jpg", inp / "p.jpg")
    shutil.copy(SHARED / "speech-jfk" / "jfk.flac", inp / "jfk.flac")
    out = tmp_path / "out"
    s = run_generate(inp, out, _cfg(tmp_path), progress=False, provider=_scripted(text_only=True))
    assert s["done"] == 2, s["failures"]
    img = _json(out / "p" / "p_image_analysis.json")
    assert img["image_visual_description"] == ""  # not described unseen
    assert "lacks image" in _json(out / "p" / META_NAME)["absent"]["image_visual_description"]
    meta = _json(out / "jfk" / META_NAME)
    assert any("lacks audio" in f for f in meta["fallbacks"])
    assert _json(out / "jfk" / "jfk_audio_analysis.json")["audio_analysis"] == "scripted tone text"


@pytest.mark.slow
def test_hf_provider_synthesis_of_one_sample(tmp_path):
    """The packaged SmolLM2 writes the final summary of one photo (text-only provider)."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    from mer_eval.registry import get_provider

    get_provider("hf")  # registered and importable: a broken provider module fails here, it is not skipped
    from mer_eval.models import resolve

    if not resolve("smollm2").available:
        pytest.skip("smollm2 weights are not installed")
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(SHARED / "faces" / "0-f15-hao-ph.jpg", inp / "p.jpg")
    out = tmp_path / "out"
    cfg = _cfg(tmp_path, "generate.provider=hf", "providers.hf.max_tokens=96")
    s = run_generate(inp, out, cfg, progress=False)
    assert s["done"] == 1, s["failures"]
    data = _json(out / "p" / "p_image_analysis.json")
    assert data["mer_eval_provider"] == "hf" and data["final_summary"].strip()
    meta = _json(out / "p" / META_NAME)
    assert meta["provider_calls"]["synthesis"]["model"]


def test_cli_generate_au_video_types_sentiment_and_single_file(tmp_path):
    """The click command: --type au / video on the face video, --task sentiment on one photo file."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    from click.testing import CliRunner
    from mer_eval.generators.commands import generate

    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(SHARED / "faces" / "single_face.mp4", inp / "v.mp4")
    shutil.copy(SHARED / "faces" / "0-f1-su-ph.jpg", inp / "p.jpg")
    common = ["--no-progress", "--set", "generate.au_max_frames=12", "--set", f"cache.dir={tmp_path / 'c'}",
              "--set", "generate.video_frames=2"]
    r = CliRunner().invoke(generate, [str(inp / "v.mp4"), str(tmp_path / "au"), "--type", "au", *common])
    assert r.exit_code == 0, r.output
    au = _json(tmp_path / "au" / "v" / "v_au_analysis.json")
    assert set(au) == {"source_path", "chronological_emotion_peaks", "overall_peak_au_description",
                       "mer_eval_provider", "mer_eval_model"}
    assert au["chronological_emotion_peaks"] and "intensity:" in au["overall_peak_au_description"]
    assert not (tmp_path / "au" / "p").exists()  # one file given: only that sample
    r = CliRunner().invoke(generate, [str(inp / "v.mp4"), str(tmp_path / "vid"), "--type", "video", *common])
    assert r.exit_code == 0, r.output
    vid = _json(tmp_path / "vid" / "v" / "v_video_analysis.json")
    assert vid["llm_video_summary"] == ""  # the offline provider does not describe pixels
    assert "no vision model" in r.output  # and the summary says why the field is empty
    assert len(list((tmp_path / "vid" / "v").glob("v_frame_*.png"))) == 2  # sampled frames for vision providers
    r = CliRunner().invoke(generate, [str(inp / "p.jpg"), str(tmp_path / "s"), "--task", "sentiment", *common])
    assert r.exit_code == 0, r.output
    img = _json(tmp_path / "s" / "p" / "p_image_analysis.json")
    assert "the overall sentiment is" in img["final_summary"]
    from mer_eval.generators.synthesis import parse_conclusion

    assert parse_conclusion(img["final_summary"], "sentiment") in ("positive", "negative", "neutral")


def test_asr_wer_against_the_generating_whisper_is_marked_dependent(run):
    """The generated transcript came from whisper-tiny.en: a whisper-tiny.en baseline measures the model
    against itself (value kept, ``independent`` false); a whisper-base baseline is independent."""
    from mer_eval.metric import ScoreContext
    from mer_eval.metrics.asr_wer import ASRWER

    jfk = discover(run["out"]).by_id()["jfk"]
    assert jfk.annotation.transcript and not jfk.reference_transcript and jfk.folder is not None
    same = ASRWER({"model": "whisper-tiny.en"}, ScoreContext(device="cpu", config=run["cfg"])).score([jfk])
    r = {x.metric: x for x in same["jfk"]}["asr_wer"]
    assert r.status.value == "ok" and r.details["reference"] == "whisper:" + r.model.id
    assert r.details["independent"] is False and "jfk_audio_features.json" in r.details["dependence"]
    other = ASRWER({"model": "whisper-base"}, ScoreContext(device="cpu", config=run["cfg"])).score([jfk])
    r2 = {x.metric: x for x in other["jfk"]}["asr_wer"]
    assert r2.status.value == "ok" and "independent" not in r2.details


def test_a_restarted_worker_clears_the_temp_file_its_killed_try_left(tmp_path):
    """A Ray actor SIGKILLed mid-write leaves ``.<file>.<pid>.<tid>.tmp`` in the sample's folder; the run's lock was
    taken (and its sweep done) before, so the restarted actor running the piece again must clear it as it restarts
    the sample (CI caught one left on a real run). Here: a real photo annotated once, its meta removed (the kill
    came before the end) and a half-written temp planted while the driver holds the lock, then the actor class
    runs the piece in this process."""
    from datetime import datetime, timezone

    from mer_eval.generators import synthesis
    from mer_eval.generators.engine_ray import GenerateActor
    from mer_eval.generators.pipeline import generate_config_hash, plan_of
    from mer_eval.store import RunStore

    inp, out, cfg = _one_photo_generated(tmp_path, "p")
    (out / "p" / META_NAME).unlink()
    orphan = out / "p" / ".p_merr_data.json.999999.999999.tmp"
    store = RunStore(out)
    phashes = synthesis.prompt_hashes()
    with store.locked():
        orphan.write_text('{"final_summ', encoding="utf-8")  # after the lock's own sweep, as a killed actor's
        actor = GenerateActor(cfg, str(out), phashes, generate_config_hash(cfg, phashes), False, {}, {},
                              datetime.now(timezone.utc).isoformat())
        got = actor.run_piece(plan_of(discover(inp), cfg))
    assert got["results"]["p"]["status"] == "done"
    assert not orphan.exists()
    assert not list((out / "p").glob(".*.tmp"))
    assert (out / "p" / META_NAME).is_file()
