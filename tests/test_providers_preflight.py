"""Provider preflight, the loopback key rule, retries that do not multiply load, capabilities declared for
local servers, and generate's exit status (issue #11, "LLM providers against a real local server").

Against the local scripted server (tests/fake_servers.py) and a closed port; the same checks against a real
``transformers serve`` are in tests/test_real_llm_server.py.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_servers import hang, ok, status
from mer_eval.generators.pipeline import make_provider
from mer_eval.generators.providers.base import PreflightError, ProviderError, ProviderRequest, is_loopback
from mer_eval.generators.providers.openai_compat import OpenAIProvider

from mer_eval.cli import main as cli
from mer_eval.config import ProviderConfig, load_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "media"
UNSET = "MER_EVAL_H11A_SURELY_UNSET_KEY"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cfg(url: str, **kw) -> ProviderConfig:
    base = {"model": "test-model", "base_url": url, "api_key_env": UNSET, "timeout_s": 5, "max_retries": 0,
            "backoff_s": 0.01}
    return ProviderConfig(**{**base, **kw})


def test_is_loopback():
    assert is_loopback("http://127.0.0.1:8000/v1") and is_loopback("http://localhost:11434/v1")
    assert is_loopback("http://[::1]:8000/v1")
    assert not is_loopback("https://api.openai.com/v1") and not is_loopback(None)


def test_remote_endpoint_without_key_fails_preflight_naming_the_env(monkeypatch):
    monkeypatch.delenv(UNSET, raising=False)
    p = OpenAIProvider(_cfg("https://api.example.invalid/v1"))
    with pytest.raises(PreflightError) as e:
        p.preflight()
    assert UNSET in str(e.value) and "no API key" in str(e.value)


def test_keyless_local_server_just_works(fake_server, monkeypatch):
    monkeypatch.delenv(UNSET, raising=False)
    fake_server.push(status(404, body="no models listing"), ok("ok"))
    p = OpenAIProvider(_cfg(fake_server.url + "/v1"))
    info = p.preflight()
    assert info["answer"] == "ok"
    assert [r.path for r in fake_server.requests] == ["/v1/models", "/v1/chat/completions"]
    assert "authorization" not in fake_server.requests[1].headers
    assert fake_server.requests[1].body["max_tokens"] == 4  # a tiny request
    # and a real request needs no --set providers.openai.api_key_env=null either
    assert p.generate(ProviderRequest(prompt="hi")).text == "fake answer"


def test_connection_refused_is_one_clear_line():
    p = OpenAIProvider(_cfg(f"http://127.0.0.1:{_free_port()}/v1"))
    with pytest.raises(PreflightError) as e:
        p.preflight()
    msg = str(e.value)
    assert "cannot connect" in msg and "is the server running" in msg and "\n" not in msg


def test_wrong_model_name_is_named_with_what_the_server_serves(fake_server):
    fake_server.push(status(200, body=json.dumps({"object": "list", "data": [{"id": "smollm2-135m"}]})))
    with pytest.raises(PreflightError) as e:
        OpenAIProvider(_cfg(fake_server.url + "/v1", model="gpt-4o")).preflight()
    assert "'gpt-4o' is not served" in str(e.value) and "smollm2-135m" in str(e.value)
    assert len(fake_server.requests) == 1  # no generation asked for


def test_preflight_timeout_is_reported(fake_server):
    fake_server.push(status(404), hang(3))
    with pytest.raises(PreflightError) as e:
        OpenAIProvider(_cfg(fake_server.url + "/v1", timeout_s=0.5)).preflight()
    assert "timed out" in str(e.value) and "raise timeout_s" in str(e.value)


def test_read_timeout_is_not_retried_by_default(fake_server):
    fake_server.push(hang(2), hang(2), hang(2))
    p = OpenAIProvider(_cfg(fake_server.url + "/v1", timeout_s=0.3, max_retries=2))
    with pytest.raises(ProviderError) as e:
        p.generate(ProviderRequest(prompt="hi"))
    assert len(fake_server.requests) == 1, "a retry would queue a second generation on a slow server"
    assert "not retried" in str(e.value) and e.value.attempts == 1


def test_read_timeout_retried_when_asked(fake_server):
    fake_server.push(hang(2), ok("late but fine"))
    p = OpenAIProvider(_cfg(fake_server.url + "/v1", timeout_s=0.3, max_retries=2, retry_read_timeout=True))
    r = p.generate(ProviderRequest(prompt="hi"))
    assert r.text == "late but fine" and r.attempts == 2


def test_retry_budget_caps_retries_across_requests(fake_server):
    fake_server.push(*[status(503)] * 10)
    p = OpenAIProvider(_cfg(fake_server.url + "/v1", max_retries=4, retry_budget=1))
    for _ in range(2):
        with pytest.raises(ProviderError):
            p.generate(ProviderRequest(prompt="hi"))
    # 2 requests, 1 retry in all (without the budget: 2 x 5 = 10)
    assert len(fake_server.requests) == 3
    assert p.stats["retries"] == 1


def test_local_server_gets_images_only_when_declared(fake_server):
    url = fake_server.url + "/v1"
    cfg = load_config(None, ["generate.provider=openai", f"providers.openai.base_url={url}"])
    assert not make_provider(cfg).supports("image")
    cfg2 = load_config(None, ["generate.provider=openai", f"providers.openai.base_url={url}",
                              "providers.openai.capabilities=[text,image]"])
    assert make_provider(cfg2).supports("image")
    remote = load_config(None, ["generate.provider=openai"])
    assert make_provider(remote).supports("image")  # OpenAI's own API: its models see images


def _image_input(tmp_path: Path) -> Path:
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(EXAMPLES / "15-f13-anc-ph.jpg", inp / "anc.jpg")
    return inp


def test_cli_check_exits_3_with_one_line(tmp_path):
    inp = _image_input(tmp_path)
    r = CliRunner().invoke(cli, ["generate", "--check", str(inp), str(tmp_path / "out"),
                                 "--set", "generate.provider=openai",
                                 "--set", f"providers.openai.base_url=http://127.0.0.1:{_free_port()}/v1"])
    assert r.exit_code == 3, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "provider check failed" in lines[0] and "cannot connect" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing was run


def test_cli_check_ready(fake_server, tmp_path):
    inp = _image_input(tmp_path)
    fake_server.push(status(404), ok("ok"))
    r = CliRunner().invoke(cli, ["generate", "--check", str(inp), str(tmp_path / "out"),
                                 "--set", "generate.provider=openai",
                                 "--set", f"providers.openai.base_url={fake_server.url}/v1"])
    assert r.exit_code == 0, r.output
    assert "ready" in r.output


def test_generate_exits_1_when_a_sample_failed(fake_server, tmp_path):
    inp = _image_input(tmp_path)
    shutil.copy(EXAMPLES / "15-f13-anc-ph.jpg", inp / "second.jpg")
    fake_server.push(status(404), ok("ok"), *[status(400, body="bad request")] * 6)
    r = CliRunner().invoke(cli, ["generate", str(inp), str(tmp_path / "out"), "--no-progress",
                                 "--concurrency", "1", "--set", "generate.provider=openai",
                                 "--set", f"providers.openai.base_url={fake_server.url}/v1",
                                 "--set", "providers.openai.max_retries=0",
                                 "--set", f"cache.dir={tmp_path / 'cache'}"])
    assert r.exit_code == 1, r.output
    assert "failed" in r.output
