"""Model output is checked before it becomes annotation text (issue #11: the literal template
``[X]`` was parsed as the emotion ``x``; audio descriptions echoed the prompt's ``Measured evidence:`` block)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fake_servers import ok
from mer_eval.generators import output_checks
from mer_eval.generators.pipeline import META_NAME, run_generate
from mer_eval.generators.providers.openai_compat import OpenAIProvider

from mer_eval.cache import Cache
from mer_eval.config import ProviderConfig, load_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "media"
TEMPLATE = "The core emotional state is [X], and the most likely cause is [Y]."
FAST = ["generate.au_max_frames=12", "generate.asr_model=whisper-tiny.en", "generate.concurrency=1"]


def test_placeholders_and_echo_are_rejected():
    assert output_checks.placeholders(TEMPLATE) == ["[X]", "[Y]"]
    assert output_checks.reject_reason(TEMPLATE, "prompt").startswith("the answer contains the template placeholder")
    prompt = "Describe the tone.\nMeasured evidence:\n- pitch rises sharply at the end of the clip\n"
    echo = "Measured evidence:\n- pitch rises sharply at the end of the clip\nThe voice is tense."
    assert "repeats the prompt" in output_checks.reject_reason(echo, prompt)
    # a real answer that mentions a bracket or a short prompt word is not rejected
    fine = "She smiles broadly [laughs]; the core emotional state is happy, and the most likely cause is a joke."
    assert output_checks.reject_reason(fine, prompt) is None


def test_audio_contract_wants_the_transcript_first():
    heard = "I can't believe you did that to me"
    assert output_checks.audio_contract("I can't believe you did that to me.\nThe voice is loud and tense.",
                                        heard) is None
    assert "single line" in output_checks.audio_contract("The voice is loud.", heard)
    assert "first line does not hold the transcript" in output_checks.audio_contract(
        "The speaker sounds angry.\nLoud, fast, tense.", heard)


def test_template_answer_is_never_an_emotion(fake_server, tmp_path, monkeypatch):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(EXAMPLES / "15-f13-anc-ph.jpg", inp / "anc.jpg")  # no label file: the model concludes
    out = tmp_path / "out"
    cfg = load_config(None, FAST + [f"cache.dir={tmp_path / 'cache'}"])
    pcfg = ProviderConfig(model="test-model", base_url=fake_server.url + "/v1", api_key_env=None, timeout_s=5,
                          max_retries=0)
    fake_server.push(ok("A woman with dark hair looks to the side."),
                     ok("The brow lowerer and lid tightener suggest anger."), ok(TEMPLATE))
    s = run_generate(inp, out, cfg, progress=False, provider=OpenAIProvider(pcfg, cache=Cache(tmp_path / "pc")))
    assert s["done"] == 1, s["failures"]
    meta = json.loads((out / "anc" / META_NAME).read_text(encoding="utf-8"))
    assert "placeholder" in meta["flags"]["llm_output_defect"] and "rejected" in meta["flags"]["llm_output_defect"]
    assert meta["defects"]["final_summary"]["text"] == TEMPLATE
    data = json.loads((out / "anc" / "anc_image_analysis.json").read_text(encoding="utf-8"))
    assert "[X]" not in json.dumps(data) and data["final_summary"] == ""
    assert data["image_visual_description"].startswith("A woman")  # the good answers are kept
    assert "model output rejected" in meta["absent"]["final_summary"]
