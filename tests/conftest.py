"""Shared fixtures. Tests never touch the network: HF_HUB_OFFLINE is forced on and caches are per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["fake_servers"]  # the local fake provider server fixture (fake_server)

REPO = Path(__file__).resolve().parent.parent
# real media no one here made: ../shared/data beside the clone, else the copy of most of it in tests/data/real
# (with its attribution), so a user's clone runs the real-data tests too
FULL_SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_DATA = FULL_SHARED_DATA if FULL_SHARED_DATA.is_dir() else Path(__file__).resolve().parent / "data" / "real"
EXAMPLES = REPO / "examples"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own mer-eval cache; the models folder variable is cleared."""
    monkeypatch.setenv("MER_EVAL_CACHE_DIR", str(tmp_path_factory.mktemp("mer-eval-cache")))
    monkeypatch.delenv("MER_EVAL_MODELS_DIR", raising=False)


@pytest.fixture
def shared_data() -> Path:
    """Real media no one here made: ``../shared/data``, else ``tests/data/real`` (skips when neither is there)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("neither ../shared/data nor tests/data/real is present")
    return SHARED_DATA


@pytest.fixture
def examples() -> Path:
    return EXAMPLES


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path_factory, monkeypatch):
    """The user's Hugging Face cache is not the tests' business: a CLIP snapshot there must not change what
    `mer-eval models` reports in a test. Each test sees an empty hub cache of its own."""
    hub = tmp_path_factory.mktemp("hf-hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(hub))


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (num_cpus=2) for a test module (start-up takes seconds); the engines use it as it is and
    leave it up. Skips when the ray extra is not installed."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'mer-eval[ray]'")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()
