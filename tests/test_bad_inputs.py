"""Issue 13 item 1: the bad-input corpus, run through validate / generate / score as a user would.

Every case is generated in tmp_path (tests/bad_inputs.py). MER_EVAL_BAD_INPUTS_TALLY=path writes the tally
(inputs tried, handled with a clear reason, processed correctly, crashes, silent wrong values) as JSON."""

from __future__ import annotations

import json
import os

import pytest

from bad_inputs import CASES, run_case, tally

OUTCOMES: list = []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, tmp_path):
    o = run_case(case, tmp_path)
    OUTCOMES.append(o)
    assert o.verdict in ("handled", "processed"), f"{case.name}: {o.verdict}: {o.detail}"


def test_corpus_size_and_tally():
    assert len(CASES) >= 40
    if not OUTCOMES:
        pytest.skip("no case ran in this session (selected alone)")
    t = tally(OUTCOMES)
    print("\nbad-input tally:", json.dumps(t, indent=1))
    path = os.environ.get("MER_EVAL_BAD_INPUTS_TALLY")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(t, f, indent=1)
    assert t["crash"] == 0 and t["silent_wrong"] == 0, t["failing"]
