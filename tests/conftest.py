"""Shared fixtures. Tests never touch the network: HF_HUB_OFFLINE is forced on and caches are per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
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
    """``../shared/data`` (real media no one here made); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (a user's clone has none)")
    return SHARED_DATA


@pytest.fixture
def examples() -> Path:
    return EXAMPLES
