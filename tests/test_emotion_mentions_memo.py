"""emotion_mentions memoises the base-lexicon scan: same answer as the unmemoised scan, and a new list per call."""

from mer_eval.domain.emotion_text import _mentions, emotion_mentions

TEXTS = [
    "She looks happy, not angry; the most likely emotion is joy.",
    "He is not sad but frustrated and a little anxious.",
    "他很高兴，不生气。",
    "Neutral face, no surprise.",
]


def test_memoised_equals_direct_scan():
    for t in TEXTS:
        for cues in (False, True):
            assert emotion_mentions(t, None, cues) == _mentions(t, None, cues)
            assert emotion_mentions(t, None, cues) == _mentions(t, None, cues)  # second call: from the memo


def test_callers_get_their_own_list():
    t = TEXTS[0]
    a = emotion_mentions(t)
    assert a, "the sample text mentions emotions"
    a.append(("x", "x", -1))
    assert ("x", "x", -1) not in emotion_mentions(t)


def test_extra_lexicon_not_memoised_with_base():
    t = "She seems glum."
    base = emotion_mentions(t)
    extra = emotion_mentions(t, {"glum": "sad"})
    assert [c for c, _, _ in extra] == ["sad"]
    assert base == _mentions(t, None, False)
