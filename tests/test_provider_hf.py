"""The hf provider: the real packaged SmolLM2-135M-Instruct GGUF through transformers."""

from __future__ import annotations

import asyncio
import time

import pytest
from mer_eval.generators.providers.base import CapabilityMissing, ProviderError, ProviderRequest
from mer_eval.generators.providers.hf import CONVERTED_MARK, HFProvider, converted_dir

from mer_eval.cache import Cache
from mer_eval.config import ModelsConfig, ProviderConfig, load_config
from mer_eval.models import resolve
from mer_eval.registry import get_provider

PROMPT = (
    "Facial action units: AU06 cheek raiser 2.1, AU12 lip corner puller 3.0. "
    "The speaker says: 'I got the job!'. Which emotion is this? Answer in one short sentence."
)
SYSTEM = "You are an expert in facial expression and emotion analysis."


@pytest.fixture(scope="module")
def smollm2():
    res = resolve("smollm2")
    if not res.available:
        pytest.skip(f"smollm2 weights are not installed: {res.reason}")
    return res


def test_registry_and_defaults():
    assert get_provider("hf") is HFProvider
    cfg = load_config().provider_config("hf")
    assert cfg.model == "smollm2"
    assert HFProvider(cfg).capabilities == frozenset({"text"})


def test_missing_weights_error_names_where_it_looked(tmp_path):
    missing = tmp_path / "nowhere" / "model.gguf"
    p = HFProvider(ProviderConfig(model="smollm2"), models=ModelsConfig(paths={"smollm2": str(missing)}))
    with pytest.raises(ProviderError) as ei:
        p.generate(ProviderRequest(prompt="hello"))
    assert "configured path for smollm2 is not usable" in str(ei.value) and str(missing) in str(ei.value)
    assert ei.value.attempts == 1 and not p.resolution().available

    q = HFProvider(ProviderConfig(model="someone/not-a-cached-model"))
    with pytest.raises(ProviderError, match="not found; looked in: .*HF cache"):
        q.generate(ProviderRequest(prompt="hello"))


def test_text_only(tmp_path, shared_data):
    p = HFProvider(ProviderConfig(model="smollm2"))
    with pytest.raises(CapabilityMissing, match="image"):
        p.check(ProviderRequest(prompt="x", images=[shared_data / "faces" / "45-m7-di-ph.jpg"]))


@pytest.mark.slow
def test_smollm2_generates_deterministically(smollm2, tmp_path):
    cfg = ProviderConfig(model="smollm2", max_tokens=32, temperature=0.0, threads=1)
    p = HFProvider(cfg, cache=Cache(tmp_path / "c"))
    req = ProviderRequest(prompt=PROMPT, system=SYSTEM, purpose="synthesis")

    async def with_ticker():
        ticks = 0
        done = asyncio.Event()

        async def tick():
            nonlocal ticks
            while not done.is_set():
                await asyncio.sleep(0.05)
                ticks += 1

        t = asyncio.create_task(tick())
        try:
            r = await p.agenerate(req)
        finally:
            done.set()
            await t
        return r, ticks

    t0 = time.perf_counter()
    r1, ticks = asyncio.run(with_ticker())
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    r2 = HFProvider(cfg).generate(req)  # no cache: generated again, same process-wide model
    second = time.perf_counter() - t1
    print(
        f"smollm2: first call (load + generate) {first:.1f} s, second generate {second:.1f} s; "
        f"answer: {r1.text!r}"
    )
    assert r1.text.strip() and not r1.cached and not r2.cached
    assert r1.text == r2.text  # greedy decoding is deterministic
    assert r1.usage["decoding"] == "greedy" and r1.usage["chat_template"] is True
    assert 0 < r1.usage["completion_tokens"] <= 32 and r1.usage["prompt_tokens"] > 20
    assert r1.model == "HuggingFaceTB/SmolLM2-135M-Instruct (SmolLM2-135M-Instruct.Q4_1.gguf)"
    assert p.revision == smollm2.sha256
    assert ticks >= 3  # the event loop kept running while the model loaded and generated in a thread
    # the third identical request is a cache hit
    r3 = p.generate(req)
    assert r3.cached and r3.text == r1.text
    # the converted transformers folder is an ordinary local model folder: same answer from it
    conv = converted_dir(smollm2.sha256)
    assert (conv / CONVERTED_MARK).is_file() and (conv / "config.json").is_file()
    r4 = HFProvider(ProviderConfig(model=str(conv), max_tokens=32, threads=1)).generate(req)
    assert r4.text == r1.text


@pytest.mark.slow
def test_smollm2_cut_at_max_tokens_is_truncated_also_from_the_cache(smollm2, tmp_path):
    """4 new tokens cannot hold the answer: all 4 generated, no end token -> finish_reason length; a
    generous limit ends on the end token -> stop. The cached cut answer stays truncated."""
    cache = Cache(tmp_path / "c")
    req = ProviderRequest(prompt=PROMPT, system=SYSTEM, purpose="synthesis")
    cut = HFProvider(ProviderConfig(model="smollm2", max_tokens=4, threads=1), cache=cache).generate(req)
    assert cut.usage["completion_tokens"] == 4 and cut.finish_reason == "length" and cut.truncated
    hit = HFProvider(ProviderConfig(model="smollm2", max_tokens=4, threads=1), cache=cache).generate(req)
    assert hit.cached and hit.text == cut.text and hit.truncated
    whole = HFProvider(ProviderConfig(model="smollm2", max_tokens=256, threads=1)).generate(req)
    assert whole.usage["completion_tokens"] < 256 and whole.finish_reason == "stop" and not whole.truncated
