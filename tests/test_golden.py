"""Every metric's outputs on real data are unchanged unless its version changed (tests/golden.py)."""

from __future__ import annotations

import json

import pytest

from golden import GOLDEN, compare, compute
from conftest import SHARED_DATA


@pytest.mark.slow
def test_metric_outputs_match_the_golden_file():
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    shared = SHARED_DATA if SHARED_DATA.is_dir() else None
    now = compute(shared)
    if shared is None:  # a user's clone: only the bundled examples are compared
        golden = {**golden, "values": {k: v for k, v in golden["values"].items() if k.startswith("examples/")}}
    assert len(golden["values"]) >= 50
    problems = compare(golden, now)
    assert not problems, "metric outputs changed without a version bump:\n" + "\n".join(problems[:40])


def test_compare_catches_a_changed_number_but_not_a_new_version():
    golden = {"versions": {"m": "1.0"}, "values": {"s/a/m": ["ok", 0.5], "s/b/m": ["not_applicable", None]}}
    same = {"versions": {"m": "1.0"}, "values": {"s/a/m": ["ok", 0.5], "s/b/m": ["not_applicable", None]}}
    assert compare(golden, same) == []
    changed = {"versions": {"m": "1.0"}, "values": {"s/a/m": ["ok", 0.6], "s/b/m": ["ok", 1.0]}}
    assert len(compare(golden, changed)) == 2
    bumped = {"versions": {"m": "1.1"}, "values": {"s/a/m": ["ok", 0.6]}}
    assert compare(golden, bumped) == []
