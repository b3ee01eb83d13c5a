"""Remote providers (OpenAI-compatible, Ollama, Gemini SDK) against a local scripted HTTP server.

Checks the base behaviour too: cache, rate limit, retries with backoff and Retry-After, capability checks,
error reporting and that API keys never reach errors or the cache.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from fake_servers import empty, hang, malformed, ok, status
from mer_eval.generators.providers.base import (
    Capability,
    CapabilityMissing,
    Provider,
    ProviderError,
    ProviderRequest,
    parse_retry_after,
)
from mer_eval.generators.providers.gemini import GeminiProvider
from mer_eval.generators.providers.openai_compat import OllamaProvider, OpenAIProvider

from mer_eval.cache import Cache
from mer_eval.config import ProviderConfig, load_config
from mer_eval.registry import get_provider

KEY_ENV = "MER_EVAL_TEST_PROVIDER_KEY"
SECRET = "sk-test-SECRET-0123456789abcdef"


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def cfg(server, **kw) -> ProviderConfig:
    base = {
        "model": "test-model",
        "base_url": server.url + "/v1",
        "api_key_env": KEY_ENV,
        "timeout_s": 2.0,
        "max_retries": 3,
        "backoff_s": 0.05,
    }
    base.update(kw)
    return ProviderConfig(**base)


def gcfg(server, **kw) -> ProviderConfig:
    base = {
        "model": "gemini-test",
        "base_url": server.url,
        "api_key_env": KEY_ENV,
        "timeout_s": 2.0,
        "max_retries": 3,
        "backoff_s": 0.05,
    }
    base.update(kw)
    return ProviderConfig(**base)


def b64any(s: str) -> bytes:
    """The SDK sends url-safe base64 without padding; servers accept both alphabets."""
    return base64.urlsafe_b64decode(s.replace("+", "-").replace("/", "_") + "=" * (-len(s) % 4))


def run(coro):
    return asyncio.run(coro)


async def gen_close(p: Provider, *reqs: ProviderRequest):
    try:
        out = []
        for r in reqs:
            out.append(await p.agenerate(r))
        return out
    finally:
        await p.aclose()


# ---- OpenAI-compatible ------------------------------------------------------------------------------


def test_openai_success_wire_format(fake_server):
    fake_server.push(ok("The speaker sounds happy."))
    p = OpenAIProvider(cfg(fake_server, temperature=0.0, max_tokens=64))
    r = p.generate(ProviderRequest(prompt="Describe the tone.", system="You are an annotator."))
    assert r.text == "The speaker sounds happy."
    assert r.provider == "openai" and r.model == "test-model" and r.attempts == 1 and not r.cached
    assert r.usage["total_tokens"] == 10 and r.usage["finish_reason"] == "stop"
    (seen,) = fake_server.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.body["model"] == "test-model"
    assert seen.body["messages"] == [
        {"role": "system", "content": "You are an annotator."},
        {"role": "user", "content": "Describe the tone."},
    ]
    assert seen.body["temperature"] == 0.0 and seen.body["max_tokens"] == 64
    assert seen.headers["authorization"] == f"Bearer {SECRET}"


def test_request_overrides_params(fake_server):
    p = OpenAIProvider(cfg(fake_server))
    p.generate(ProviderRequest(prompt="x", temperature=0.7, max_tokens=5))
    assert fake_server.requests[0].body["temperature"] == 0.7
    assert fake_server.requests[0].body["max_tokens"] == 5


def test_ollama_defaults_and_no_key(fake_server, monkeypatch):
    assert OllamaProvider(ProviderConfig()).base_url == "http://localhost:11434/v1"
    assert load_config().provider_config("ollama").base_url == "http://localhost:11434/v1"
    monkeypatch.delenv(KEY_ENV)
    p = OllamaProvider(ProviderConfig(model="llama3.2", base_url=fake_server.url + "/v1", timeout_s=2))
    r = p.generate(ProviderRequest(prompt="hi"))
    assert r.text == "fake answer" and r.provider == "ollama"
    assert "authorization" not in fake_server.requests[0].headers


def test_openai_missing_key_is_an_error(fake_server, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    remote = cfg(fake_server).model_copy(update={"base_url": "https://api.example.invalid/v1"})
    p = OpenAIProvider(remote)
    with pytest.raises(ProviderError, match=KEY_ENV):  # a remote API: refused before any request
        p.generate(ProviderRequest(prompt="hi"))
    assert fake_server.requests == []
    # a server on 127.0.0.1 needs no key: the request goes out without an Authorization header
    fake_server.push(ok("hello"))
    assert OpenAIProvider(cfg(fake_server)).generate(ProviderRequest(prompt="hi")).text == "hello"
    assert len(fake_server.requests) == 1
    assert "authorization" not in {k.lower() for k in fake_server.requests[0].headers}


def test_provider_overrides_merge_with_defaults():
    c = load_config(sets=["providers.openai.model=gpt-4.1-mini", "providers.hf.max_tokens=96"])
    from mer_eval.registry import available

    assert sorted(available("providers")) == ["gemini", "hf", "offline", "ollama", "openai"]  # found, not listed
    assert sorted(c.providers) == ["hf", "openai"]  # only what the user set; the rest is each provider's own
    assert c.provider_config("openai").model == "gpt-4.1-mini"
    assert c.provider_config("openai").api_key_env == "OPENAI_API_KEY"
    assert (c.provider_config("hf").model, c.provider_config("hf").max_tokens) == ("smollm2", 96)


def test_registry_names():
    assert get_provider("openai") is OpenAIProvider
    assert get_provider("ollama") is OllamaProvider
    assert get_provider("gemini") is GeminiProvider


def test_retry_after_429_is_honoured(fake_server):
    fake_server.push(status(429, retry_after="1"), ok("after the wait"))
    p = OpenAIProvider(cfg(fake_server, backoff_s=0.01))
    t0 = time.monotonic()
    r = p.generate(ProviderRequest(prompt="x"))
    elapsed = time.monotonic() - t0
    assert r.text == "after the wait" and r.attempts == 2
    assert elapsed >= 1.0
    a, b = fake_server.requests
    assert b.t - a.t >= 1.0
    assert p.stats["retries"] == 1


def test_parse_retry_after_seconds_and_http_date():
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after(when) <= 31
    past = format_datetime(datetime.now(timezone.utc) - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past) == 0.0


def test_500_then_200_is_retried(fake_server):
    fake_server.push(status(500), ok("second time lucky"))
    r = OpenAIProvider(cfg(fake_server)).generate(ProviderRequest(prompt="x"))
    assert r.text == "second time lucky" and r.attempts == 2
    assert len(fake_server.requests) == 2


def test_persistent_500_gives_up_after_max_retries(fake_server):
    fake_server.push(*[status(500)] * 5)
    p = OpenAIProvider(cfg(fake_server, max_retries=2, backoff_s=0.05))
    t0 = time.monotonic()
    with pytest.raises(ProviderError) as ei:
        p.generate(ProviderRequest(prompt="x"))
    elapsed = time.monotonic() - t0
    e = ei.value
    assert e.attempts == 3 and e.status == 500 and not e.retryable
    assert "3 attempt" in str(e) and "HTTP 500" in str(e) and "scripted error 500" in str(e)
    assert len(fake_server.requests) == 3
    assert elapsed >= 0.05 + 0.1  # backoff_s * 2**0 + backoff_s * 2**1


def test_4xx_is_not_retried(fake_server):
    fake_server.push(status(400, body='{"error": {"message": "bad request: model not found"}}'))
    with pytest.raises(ProviderError, match="model not found") as ei:
        OpenAIProvider(cfg(fake_server)).generate(ProviderRequest(prompt="x"))
    assert ei.value.status == 400 and ei.value.attempts == 1
    assert len(fake_server.requests) == 1


def test_timeout_is_retried_then_error(fake_server):
    fake_server.push(hang(3), hang(3))
    p = OpenAIProvider(cfg(fake_server, timeout_s=0.3, max_retries=1, backoff_s=0.05, retry_read_timeout=True))
    t0 = time.monotonic()
    with pytest.raises(ProviderError, match="timed out") as ei:
        p.generate(ProviderRequest(prompt="x"))
    elapsed = time.monotonic() - t0
    assert ei.value.attempts == 2
    assert 0.6 <= elapsed < 2.0
    assert len(fake_server.requests) == 2


def test_connection_refused_is_retried_then_error():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    p = OpenAIProvider(
        ProviderConfig(
            model="m",
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key_env=KEY_ENV,
            timeout_s=1,
            max_retries=2,
            backoff_s=0.01,
        )
    )
    with pytest.raises(ProviderError, match="connection error") as ei:
        p.generate(ProviderRequest(prompt="x"))
    assert ei.value.attempts == 3


def test_malformed_body_is_an_error_not_retried(fake_server):
    fake_server.push(malformed())
    with pytest.raises(ProviderError, match="not JSON") as ei:
        OpenAIProvider(cfg(fake_server)).generate(ProviderRequest(prompt="x"))
    assert ei.value.attempts == 1 and len(fake_server.requests) == 1


def test_empty_choices_is_an_error(fake_server):
    fake_server.push(empty())
    with pytest.raises(ProviderError, match="no choices"):
        OpenAIProvider(cfg(fake_server)).generate(ProviderRequest(prompt="x"))


def test_empty_text_is_an_error_and_not_cached(fake_server, tmp_path):
    cache = Cache(tmp_path / "c")
    fake_server.push(ok("   "))
    p = OpenAIProvider(cfg(fake_server), cache=cache)
    with pytest.raises(ProviderError, match="empty response"):
        p.generate(ProviderRequest(prompt="x"))
    assert len(cache) == 0


def test_cache_hit_and_errors_not_cached(fake_server, tmp_path):
    cache = Cache(tmp_path / "c")
    p = OpenAIProvider(cfg(fake_server, max_retries=0), cache=cache)
    req = ProviderRequest(prompt="Describe the face.", system="sys")
    fake_server.push(status(503))
    with pytest.raises(ProviderError):
        p.generate(req)
    assert len(cache) == 0  # the error was not saved
    fake_server.push(ok("a calm face"))
    r1 = p.generate(req)
    r2 = p.generate(ProviderRequest(prompt="Describe the face.", system="sys"))
    assert (r1.text, r1.cached) == ("a calm face", False)
    assert (r2.text, r2.cached, r2.attempts) == ("a calm face", True, 0)
    assert len(fake_server.requests) == 2  # the 503 and one success; the hit never reached the server
    assert len(cache) == 1
    # a fresh provider instance on the same cache also hits
    r3 = OpenAIProvider(cfg(fake_server, max_retries=0), cache=cache).generate(req)
    assert r3.cached and len(fake_server.requests) == 2
    # anything that changes the answer misses
    p.generate(ProviderRequest(prompt="Describe the face.", system="other"))
    p.generate(ProviderRequest(prompt="Describe the face.", system="sys", temperature=0.5))
    p.generate(ProviderRequest(prompt="Describe the face.", system="sys", context={"aus": {"AU12": 2.0}}))
    OpenAIProvider(cfg(fake_server, max_retries=0, model="other-model"), cache=cache).generate(req)
    assert len(fake_server.requests) == 6


def test_cache_key_hashes_file_content(shared_data, tmp_path):
    src = shared_data / "faces" / "45-m7-di-ph.jpg"
    a = tmp_path / "a.jpg"
    b = tmp_path / "renamed.jpg"
    a.write_bytes(src.read_bytes())
    b.write_bytes(src.read_bytes())
    p = OpenAIProvider(ProviderConfig(model="m"))
    ka = p.cache_key(ProviderRequest(prompt="x", images=[a]))
    assert ka == p.cache_key(ProviderRequest(prompt="x", images=[b]))
    b.write_bytes(src.read_bytes() + b"\0")
    assert ka != p.cache_key(ProviderRequest(prompt="x", images=[b]))


def test_rate_limit_spacing(fake_server):
    p = OpenAIProvider(cfg(fake_server, rate_limit_per_s=5))

    async def three():
        try:
            return await asyncio.gather(*[p.agenerate(ProviderRequest(prompt=f"q{i}")) for i in range(3)])
        finally:
            await p.aclose()

    t0 = time.monotonic()
    out = run(three())
    elapsed = time.monotonic() - t0
    assert [r.text for r in out] == ["fake answer"] * 3
    assert elapsed >= 0.4
    ts = sorted(s.t for s in fake_server.requests)
    # arrival times carry connection-setup jitter (the first request opens the client); starts are spaced
    assert ts[2] - ts[0] >= 0.3 and all(b - a >= 0.1 for a, b in itertools.pairwise(ts))


def test_rate_limiter_reservations_are_spaced():
    from mer_eval.generators.providers.base import RateLimiter

    lim = RateLimiter(5)
    waits = [lim.reserve() for _ in range(4)]
    assert waits[0] == 0.0
    assert [round(w, 2) for w in waits[1:]] == [0.2, 0.4, 0.6]
    assert RateLimiter(None).reserve() == 0.0


def test_capability_missing_names_capability_and_fallback(fake_server, shared_data):
    p = OpenAIProvider(cfg(fake_server))
    assert p.supports(Capability.image) and not p.supports("audio")
    req = ProviderRequest(prompt="tone?", audio=shared_data / "speech-emotion" / "08.wav")
    assert req.needs() == {Capability.text, Capability.audio}
    with pytest.raises(CapabilityMissing) as ei:
        p.generate(req)
    e = ei.value
    assert e.capability == Capability.audio and e.provider == "openai"
    assert "audio" in str(e) and "transcript" in str(e) and e.fallback in str(e)
    assert fake_server.requests == []
    # video falls back to frames for an image-capable provider
    with pytest.raises(CapabilityMissing, match="video.*sampled frames"):
        p.check(ProviderRequest(prompt="x", video=shared_data / "faces" / "single_face.mp4"))


def test_audio_when_configured_capable(fake_server, shared_data):
    wav = shared_data / "speech-emotion" / "08.wav"
    p = OpenAIProvider(cfg(fake_server, capabilities=["text", "image", "audio"]))
    p.generate(ProviderRequest(prompt="tone?", audio=wav))
    part = fake_server.requests[0].body["messages"][-1]["content"][1]
    assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
    assert base64.b64decode(part["input_audio"]["data"]) == wav.read_bytes()


def test_image_is_sent_as_base64_data_url(fake_server, shared_data):
    img = shared_data / "faces" / "45-m7-di-ph.jpg"
    p = OpenAIProvider(cfg(fake_server))
    p.generate(ProviderRequest(prompt="Describe the expression.", images=[img]))
    content = fake_server.requests[0].body["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "Describe the expression."}
    url = content[1]["image_url"]["url"]
    assert content[1]["type"] == "image_url" and url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == img.read_bytes()


def test_missing_input_file_is_an_error(fake_server, tmp_path):
    with pytest.raises(ProviderError, match="does not exist"):
        OpenAIProvider(cfg(fake_server)).generate(ProviderRequest(prompt="x", images=[tmp_path / "nope.jpg"]))
    assert fake_server.requests == []


def test_api_key_never_in_errors_or_cache(fake_server, tmp_path):
    cache = Cache(tmp_path / "c")
    p = OpenAIProvider(cfg(fake_server, max_retries=1), cache=cache)
    # a server that echoes the credentials it got into its error body
    fake_server.push(
        status(500, body='{"error": "bad key {auth}"}'), status(401, body='{"error": "no: {auth}"}')
    )
    with pytest.raises(ProviderError) as ei:
        p.generate(ProviderRequest(prompt="x"))
    assert fake_server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in str(ei.value) and SECRET not in repr(ei.value.to_dict())
    assert "[REDACTED]" in str(ei.value)
    p.generate(ProviderRequest(prompt="y"))
    assert len(cache) == 1
    for f in (tmp_path / "c").iterdir():
        assert SECRET.encode() not in f.read_bytes()
    assert SECRET not in repr(p.describe())


def test_sync_generate_twice_uses_fresh_loops(fake_server):
    p = OpenAIProvider(cfg(fake_server))
    assert p.generate(ProviderRequest(prompt="a")).text == "fake answer"
    assert p.generate(ProviderRequest(prompt="b")).text == "fake answer"
    assert len(fake_server.requests) == 2


# ---- Gemini (official SDK pointed at the local server) -------------------------------------------


def test_gemini_success_via_sdk(fake_server, shared_data):
    img = shared_data / "faces" / "45-m7-di-ph.jpg"
    wav = shared_data / "speech-emotion" / "08.wav"
    fake_server.push(ok("Surprised face, rising pitch."))
    p = GeminiProvider(gcfg(fake_server, temperature=0.0, max_tokens=77))
    assert all(p.supports(c) for c in Capability)
    r = p.generate(
        ProviderRequest(prompt="Describe.", system="You annotate emotions.", images=[img], audio=wav)
    )
    assert r.text == "Surprised face, rising pitch." and r.provider == "gemini" and r.model == "gemini-test"
    assert r.usage["total_tokens"] == 10 and r.usage["served_model"] == "fake-gemini"
    (seen,) = fake_server.requests
    assert seen.path.endswith("/models/gemini-test:generateContent")
    assert seen.headers["x-goog-api-key"] == SECRET
    body = seen.body
    assert (
        body["generationConfig"]["temperature"] == 0.0 and body["generationConfig"]["maxOutputTokens"] == 77
    )
    assert "You annotate emotions." in str(body["systemInstruction"])
    parts = body["contents"][0]["parts"]
    inline = [pt["inlineData"] for pt in parts if "inlineData" in pt]
    # this SDK version sends the proto field name mime_type (REST accepts both spellings)
    assert [d.get("mimeType") or d.get("mime_type") for d in inline] == ["image/jpeg", "audio/wav"]
    assert b64any(inline[0]["data"]) == img.read_bytes()
    assert b64any(inline[1]["data"]) == wav.read_bytes()
    assert parts[-1] == {"text": "Describe."}


def test_gemini_429_retry_after_and_500_retry(fake_server):
    fake_server.push(status(429, retry_after="1"), status(500), ok("fine"))
    p = GeminiProvider(gcfg(fake_server))
    t0 = time.monotonic()
    r = p.generate(ProviderRequest(prompt="x"))
    assert r.text == "fine" and r.attempts == 3
    assert time.monotonic() - t0 >= 1.0
    assert len(fake_server.requests) == 3


def test_gemini_persistent_500_and_key_redacted(fake_server):
    fake_server.push(
        *[status(500, body='{"error": {"code": 500, "message": "boom {auth}", "status": "INTERNAL"}}')] * 3
    )
    p = GeminiProvider(gcfg(fake_server, max_retries=2))
    with pytest.raises(ProviderError) as ei:
        p.generate(ProviderRequest(prompt="x"))
    assert ei.value.attempts == 3 and ei.value.status == 500 and "boom" in str(ei.value)
    assert SECRET not in str(ei.value)


def test_gemini_timeout(fake_server):
    fake_server.push(hang(3), hang(3))
    p = GeminiProvider(gcfg(fake_server, timeout_s=0.3, max_retries=1))
    t0 = time.monotonic()
    with pytest.raises(ProviderError, match="timed out") as ei:
        p.generate(ProviderRequest(prompt="x"))
    assert ei.value.attempts == 2 and time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("reply,pattern", [(malformed, "malformed"), (empty, "empty response")])
def test_gemini_malformed_and_empty(fake_server, tmp_path, reply, pattern):
    cache = Cache(tmp_path / "c")
    fake_server.push(reply())
    with pytest.raises(ProviderError, match=pattern) as ei:
        GeminiProvider(gcfg(fake_server), cache=cache).generate(ProviderRequest(prompt="x"))
    assert ei.value.attempts == 1 and len(fake_server.requests) == 1 and len(cache) == 0


def test_gemini_missing_key(fake_server, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ProviderError, match=KEY_ENV):
        GeminiProvider(gcfg(fake_server)).generate(ProviderRequest(prompt="x"))


def test_gemini_video_inline(fake_server, shared_data):
    video = shared_data / "faces" / "single_face.mp4"
    p = GeminiProvider(gcfg(fake_server))
    r = p.generate(ProviderRequest(prompt="What happens in the clip?", video=video))
    assert r.text == "fake answer"
    parts = fake_server.requests[0].body["contents"][0]["parts"]
    (inline,) = [pt["inlineData"] for pt in parts if "inlineData" in pt]
    assert (inline.get("mimeType") or inline.get("mime_type")) == "video/mp4"
    assert b64any(inline["data"]) == video.read_bytes()


def test_gemini_inline_limit(fake_server, tmp_path, monkeypatch):
    import mer_eval.generators.providers.gemini as gem

    monkeypatch.setattr(gem, "INLINE_LIMIT_BYTES", 10)
    big = tmp_path / "clip.mp4"
    big.write_bytes(b"\0" * 64)
    with pytest.raises(ProviderError, match="inline inputs exceed"):
        GeminiProvider(gcfg(fake_server)).generate(ProviderRequest(prompt="x", video=big))
    assert fake_server.requests == []


# ---- finish reasons: an answer cut at the token limit ----------------------------------------------


def openai_length_body(text: str) -> str:
    """An OpenAI chat completion that stopped at max_tokens (finish_reason length)."""
    import json

    return json.dumps({"id": "chatcmpl-fake", "object": "chat.completion", "model": "fake-model",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "length"}],
                       "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}})


def gemini_max_tokens_body(text: str) -> str:
    import json

    return json.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                       "finishReason": "MAX_TOKENS", "index": 0}],
                       "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 5, "totalTokenCount": 12},
                       "modelVersion": "fake-gemini"})


def test_openai_finish_reason_on_the_response_and_through_the_cache(fake_server, tmp_path):
    cache = Cache(tmp_path / "c")
    fake_server.push(status(200, body=openai_length_body("The face shows a broad smi")), ok("A calm face."))
    p = OpenAIProvider(cfg(fake_server, max_tokens=5), cache=cache)
    cut = p.generate(ProviderRequest(prompt="Describe the face.", purpose="visual_description"))
    assert cut.text == "The face shows a broad smi"
    assert cut.finish_reason == "length" and cut.truncated and not cut.cached
    whole = p.generate(ProviderRequest(prompt="Describe the voice."))
    assert whole.finish_reason == "stop" and not whole.truncated
    # the cached truncated answer is still a truncated answer
    again = OpenAIProvider(cfg(fake_server, max_tokens=5), cache=cache).generate(
        ProviderRequest(prompt="Describe the face.", purpose="visual_description"))
    assert again.cached and again.text == cut.text and again.finish_reason == "length" and again.truncated
    assert len(fake_server.requests) == 2


def test_gemini_max_tokens_is_finish_reason_length(fake_server, tmp_path):
    cache = Cache(tmp_path / "c")
    fake_server.push(status(200, body=gemini_max_tokens_body("Rising pitch and a fast")), ok("fine"))
    p = GeminiProvider(gcfg(fake_server, max_tokens=5), cache=cache)
    r = p.generate(ProviderRequest(prompt="Describe the tone."))
    assert r.text == "Rising pitch and a fast" and r.finish_reason == "length" and r.truncated
    assert p.generate(ProviderRequest(prompt="other")).finish_reason == "stop"
    hit = GeminiProvider(gcfg(fake_server, max_tokens=5), cache=cache).generate(
        ProviderRequest(prompt="Describe the tone."))
    assert hit.cached and hit.truncated


def test_misspelt_provider_key_names_the_allowed_keys():
    from mer_eval.config import ConfigError

    with pytest.raises(ConfigError, match=r"providers\.openai\.modle'; allowed here: api_key_env, .*model"):
        load_config(sets=["providers.openai.modle=x"])
    with pytest.raises(ConfigError, match=r"'providers\.opneai'; allowed here: gemini, hf, offline, ollama, openai"):
        load_config(sets=["providers.opneai.model=x"])
