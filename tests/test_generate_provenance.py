"""``generate`` records who wrote each field (``text_origins``), what decided the conclusion
(``conclusion_from``) and what is wrong with a sample (``flags``) in ``mer_eval_meta.json``, and discovery
reads them back into ``Sample.provenance`` (issue #9 points 5 and 6).

Real media only: the bundled ``examples/media`` (offline provider), a photo and a speech file from it sent
to the local fake OpenAI / Gemini servers (``tests/fake_servers.py``) that answer with a cut-off text, and
the first half of the real ``jfk.flac``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fake_servers import ok, status
from mer_eval.generators.pipeline import META_NAME, run_generate
from mer_eval.generators.providers.gemini import GeminiProvider
from mer_eval.generators.providers.openai_compat import OpenAIProvider
from test_providers_http import gemini_max_tokens_body, openai_length_body

from mer_eval.cache import Cache
from mer_eval.config import ProviderConfig, load_config
from mer_eval.discovery import discover
from mer_eval.evidence import relate
from mer_eval.schema import Relation

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "media"
from conftest import SHARED_DATA as SHARED  # noqa: E402 (../shared/data, else tests/data/real)
FAST = ["generate.au_max_frames=12", "generate.asr_model=whisper-tiny.en", "generate.asr_language=en",
        "generate.video_frames=2", "generate.concurrency=2"]
KEY_ENV = "MER_EVAL_TEST_PROVIDER_KEY"
PRODUCERS = {"llm", "template", "rule", "asr", "detector"}
# the offline summary names its cues like this (synthesis._CUE_NAMES); the fields each cue read
CUE_FIELDS = {"expression classifier": ["fer_probabilities"],
              "action-unit rules": ["top_aus_intensities", "chronological_emotion_peaks"],
              "voice": ["audio_description"]}


def _cfg(tmp: Path, *extra: str):
    return load_config(None, FAST + [f"cache.dir={tmp / 'cache'}", *extra])


def _meta(out: Path, sid: str) -> dict:
    return json.loads((out / sid / META_NAME).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def examples_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prov")
    inp = tmp / "media"
    shutil.copytree(EXAMPLES, inp)
    out = tmp / "out"
    summary = run_generate(inp, out, _cfg(tmp), progress=False)
    assert summary["done"] == 5 and not summary["failures"], summary["failures"]
    return out


def _check_shape(meta: dict) -> None:
    for field, o in meta["text_origins"].items():
        assert set(o) == {"producer", "made_from", "stage", "provider", "model"}, field
        assert o["producer"] in PRODUCERS and isinstance(o["made_from"], list) and o["stage"], (field, o)


def test_offline_video_conclusion_from_is_what_the_vote_counted(examples_run):
    meta = _meta(examples_run, "single_face")
    data = json.loads((examples_run / "single_face" / "single_face_merr_data.json").read_text())
    _check_shape(meta)
    o = meta["text_origins"]
    summary = data["final_summary"]
    # the cues the summary itself says were counted ("1 of 2 measured cues point to happy (action-unit
    # rules: contempt/angry, expression classifier: happy); ...")
    m = re.search(r"(\d+) of (\d+) measured cues point to (\w+) \((.*?)\); ties", summary)
    assert m, summary
    named = [part.split(":")[0].strip() for part in m.group(4).split(", ")]
    assert len(named) == int(m.group(2)) and m.group(3) == meta["conclusion"]
    expected = {f for cue in named for f in CUE_FIELDS[cue]}
    if not data["chronological_emotion_peaks"]:
        expected.discard("chronological_emotion_peaks")
    assert set(meta["conclusion_from"]) == expected
    assert "expression classifier" in named and "fer_probabilities" in meta["conclusion_from"]
    assert "audio_description" not in meta["conclusion_from"]  # the voice measured no emotion here
    # the summary is a template over every clue it put in, FER included
    fs = o["final_summary"]
    assert (fs["producer"], fs["stage"], fs["provider"]) == ("template", "synthesis", "offline")
    assert {"fer_probabilities", "top_aus_intensities", "visual_expression",
            "chronological_emotion_peaks"} <= set(fs["made_from"])
    assert "The facial expression classifier" in summary and "At the overall peak frame" in summary
    assert "visual_objective" not in fs["made_from"] and "video_content" not in fs["made_from"]  # none written
    assert o["visual_expression"] == {"producer": "rule", "made_from": ["top_aus_intensities"],
                                      "stage": "au_text", "provider": None, "model": None}
    assert o["chronological_emotion_peaks"]["producer"] == "rule"
    assert o["fer_probabilities"]["producer"] == "detector"
    assert o["fer_probabilities"]["made_from"] == ["peak_frame_image"]
    # the tone text restates measured prosody: a template made from the audio
    assert data["coarse_descriptions_at_peak"]["audio_analysis"]
    assert o["audio_description"]["producer"] == "template" and o["audio_description"]["made_from"] == ["audio"]
    # offline writes no scene text: no origin for what is not there
    assert "visual_objective" not in o and "video_content" not in o
    assert meta["flags"] == {}


def test_offline_labelled_photos_conclude_from_the_label(examples_run):
    labels = {"0-f15-hao-ph": "happy", "15-f13-anc-ph": "angry"}  # examples/media/labels.csv
    for sid, label in labels.items():
        meta = _meta(examples_run, sid)
        _check_shape(meta)
        assert meta["conclusion"] == label and meta["conclusion_from"] == ["label"]
        o = meta["text_origins"]
        assert "label" in o["final_summary"]["made_from"]
        assert o["au_text_description"]["producer"] == "rule"
        assert o["llm_au_description"]["producer"] == "template"
        assert o["fer_probabilities"]["made_from"] == ["image"]


def test_offline_speech_transcript_is_asr(examples_run):
    for sid in ("sense_and_sensibility_01_austen_64kb-0880", "sense_and_sensibility_01_austen_64kb-0930"):
        meta = _meta(examples_run, sid)
        _check_shape(meta)
        o = meta["text_origins"]
        assert o["transcript"]["producer"] == "asr" and o["transcript"]["made_from"] == ["audio"]
        assert "whisper" in o["transcript"]["model"].lower()
        assert o["audio_description"]["producer"] == "template"
        assert meta["conclusion_from"] is None  # no synthesis for an audio sample
        assert meta["flags"] == {}


def test_discovery_reads_the_provenance_back(examples_run):
    by = discover(examples_run).by_id()
    sf = by["single_face"]
    meta = _meta(examples_run, "single_face")
    assert sf.provenance.conclusion_from == meta["conclusion_from"]
    assert set(sf.provenance.origins) == set(meta["text_origins"])
    assert sf.provenance.origins["final_summary"].producer == "template"
    # the FER class voted the conclusion: comparing the two is a self-check, not evidence
    ev = relate(sf, ["final_summary"], ["fer_probabilities"], conclusion=True)
    assert ev.relation == Relation.self_check and not ev.independent
    assert by["0-f15-hao-ph"].provenance.conclusion_from == ["label"]
    assert by["sense_and_sensibility_01_austen_64kb-0880"].provenance.origins["transcript"].producer == "asr"



def test_discovery_reads_the_au_and_asr_records(examples_run, tmp_path):
    """What AU-F1 and ASR-WER need from the generator's stage files (the AU backend, the ASR model and text of
    the transcript) is in ``Sample.provenance`` after discovery, and the metrics read it there."""
    from mer_eval.domain.records import asr_of, au_source_of
    from mer_eval.metrics.au_f1 import provenance
    from mer_eval.schema import Sample

    by = discover(examples_run).by_id()
    sf = by["single_face"]
    rec = sf.provenance.au_source
    assert sf.provenance.records_read and rec.error is None
    assert rec.backend == _meta(examples_run, "single_face")["au_source"] and rec.recorded_in == META_NAME
    assert [f.name for f in rec.files] == [META_NAME, "single_face_au.json", "single_face_peaks.json"]
    sp = by["sense_and_sensibility_01_austen_64kb-0880"]
    feats = json.loads((examples_run / sp.id / f"{sp.id}_audio_features.json").read_text(encoding="utf-8"))
    asr = sp.provenance.asr
    assert asr is not None and asr.file == examples_run / sp.id / f"{sp.id}_audio_features.json"
    assert asr.transcript == feats["outputs"]["transcript"]
    assert (asr.model_id, asr.model_sha256) == (feats["outputs"]["asr"]["model"]["id"],
                                                feats["outputs"]["asr"]["model"]["sha256"])
    # the metrics take the discovered record, not the folder
    moved = sf.model_copy(update={"folder": tmp_path})
    assert provenance(moved).backend == rec.backend and au_source_of(moved) == rec
    assert asr_of(sp.model_copy(update={"folder": tmp_path})) == asr
    # a Sample built by hand (not discovered) has its folder read on demand, to the same record
    assert au_source_of(Sample(id=sf.id, folder=sf.folder)) == rec
    assert asr_of(Sample(id=sp.id, folder=sp.folder)) == asr
    assert au_source_of(Sample(id="x")).backend is None and asr_of(Sample(id="x")) is None


# ---- truncated answers (OpenAI-compatible and Gemini fake servers) -------------------------------


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-provenance")


def test_openai_answer_cut_at_the_token_limit_is_flagged(fake_server, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(EXAMPLES / "15-f13-anc-ph.jpg", inp / "anc.jpg")  # no label file: a model concludes
    out = tmp_path / "out"
    cfg = _cfg(tmp_path)
    pcfg = ProviderConfig(model="test-model", base_url=fake_server.url + "/v1", api_key_env=KEY_ENV,
                          timeout_s=5, max_retries=0, max_tokens=24)

    def provider():
        return OpenAIProvider(pcfg, cache=Cache(tmp_path / "pcache"))

    # an image sample asks: visual_description, au_description, synthesis (in this order)
    fake_server.push(ok("A man in a dark shirt looks at the camera."),
                     ok("The brow lowerer and lid tightener together suggest anger."),
                     status(200, body=openai_length_body("The lowered brows and tightened lids point to")))
    s = run_generate(inp, out, cfg, progress=False, provider=provider())
    assert s["done"] == 1, s["failures"]
    assert "core emotional state" in json.dumps(fake_server.requests[2].body)  # the cut one is the summary
    meta = _meta(out, "anc")
    assert meta["provider_calls"]["synthesis"]["finish_reason"] == "length"
    assert meta["provider_calls"]["visual_description"]["finish_reason"] == "stop"
    why = meta["flags"]["truncated_llm_output"]
    assert why.startswith("final_summary (synthesis") and "max_tokens 24" in why
    assert "image_description" not in why and "llm_au_description" not in why
    # the cut summary also lacks its closing line: kept, and flagged as an output defect (output_checks)
    assert set(meta["flags"]) == {"truncated_llm_output", "llm_output_defect"}
    assert meta["flags"]["llm_output_defect"].startswith("final_summary: no closing line") and \
        meta["flags"]["llm_output_defect"].endswith("(kept)")
    assert s["flags"]["anc"] == meta["flags"]
    o = meta["text_origins"]
    assert o["final_summary"]["producer"] == "llm" and o["final_summary"]["provider"] == "openai"
    assert {"image_description", "au_text_description", "fer_probabilities"} <= set(o["final_summary"]["made_from"])
    assert o["image_description"]["producer"] == "llm" and o["image_description"]["made_from"][-1] == "image"
    assert o["llm_au_description"]["producer"] == "llm"
    assert meta["conclusion_from"] is None  # a model decided
    sample = discover(out).by_id()["anc"]
    assert sample.provenance.flags["truncated_llm_output"] == why
    assert sample.provenance.conclusion_from is None
    # again from the cache (no request reaches the server): the truncated answer is still flagged
    n = len(fake_server.requests)
    again = run_generate(inp, out, cfg, progress=False, provider=provider(), force=True)
    assert again["done"] == 1 and len(fake_server.requests) == n
    meta = _meta(out, "anc")
    assert meta["provider_calls"]["synthesis"]["cached"] is True
    assert "from the cache" in meta["flags"]["truncated_llm_output"]
    assert "truncated_llm_output" in discover(out).by_id()["anc"].provenance.flags


def test_gemini_tone_cut_at_max_tokens_flags_the_tone_field(fake_server, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    wav = "sense_and_sensibility_01_austen_64kb-0880.wav"
    shutil.copy(EXAMPLES / wav, inp / wav)
    out = tmp_path / "out"
    pcfg = ProviderConfig(model="gemini-test", base_url=fake_server.url, api_key_env=KEY_ENV, timeout_s=5,
                          max_retries=0, max_tokens=16)
    fake_server.push(status(200, body=gemini_max_tokens_body(
        "I had no idea of it before.\nThe speaker reads calmly at a moderate pace with a")))
    s = run_generate(inp, out, _cfg(tmp_path), progress=False, provider=GeminiProvider(pcfg))
    assert s["done"] == 1, s["failures"]
    sid = Path(wav).stem
    meta = _meta(out, sid)
    assert meta["provider_calls"]["tone"]["finish_reason"] == "length"
    why = meta["flags"]["truncated_llm_output"]
    assert why.startswith("audio_description (tone)") and "gemini" in why  # the tone line is the cut one
    o = meta["text_origins"]
    # the model wrote the whole audio_analysis, transcript line included, from the attached audio
    for f in ("transcript", "audio_description"):
        assert o[f]["producer"] == "llm" and o[f]["provider"] == "gemini" and o[f]["made_from"] == ["audio"]
    assert "truncated_llm_output" in discover(out).by_id()[sid].provenance.flags


# ---- partial audio --------------------------------------------------------------------------------


def test_partial_audio_is_flagged(tmp_path):
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    inp = tmp_path / "in"
    inp.mkdir()
    data = (SHARED / "speech-jfk" / "jfk.flac").read_bytes()
    (inp / "jfk_cut.flac").write_bytes(data[: len(data) // 2])  # the real file, cut in half
    shutil.copy(SHARED / "speech-jfk" / "jfk.flac", inp / "jfk.flac")
    out = tmp_path / "out"
    s = run_generate(inp, out, _cfg(tmp_path), progress=False)
    assert s["done"] == 2, s["failures"]
    cut = _meta(out, "jfk_cut")
    why = cut["flags"]["partial_audio"]
    assert "of the 11.00 s its stream declares" in why
    assert s["flags"]["jfk_cut"]["partial_audio"] == why
    assert _meta(out, "jfk")["flags"] == {}
    by = discover(out).by_id()
    assert by["jfk_cut"].provenance.flags["partial_audio"] == why
    assert by["jfk"].provenance.flags == {}


@pytest.mark.slow
def test_hf_summary_at_max_new_tokens_is_flagged(tmp_path):
    """SmolLM2 limited to 8 new tokens cannot finish a summary: finish_reason length, flagged."""
    from mer_eval.models import resolve

    if not resolve("smollm2").available:
        pytest.skip("smollm2 weights are not installed")
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(EXAMPLES / "0-f15-hao-ph.jpg", inp / "p.jpg")
    out = tmp_path / "out"
    s = run_generate(inp, out, _cfg(tmp_path, "generate.provider=hf", "providers.hf.max_tokens=8"),
                     progress=False)
    assert s["done"] == 1, s["failures"]
    meta = _meta(out, "p")
    assert meta["provider_calls"]["synthesis"]["finish_reason"] == "length"
    assert "final_summary (synthesis" in meta["flags"]["truncated_llm_output"]
    assert meta["text_origins"]["final_summary"]["producer"] == "llm"
    assert meta["conclusion_from"] is None
