"""Which task an annotation was made for: emotion recognition (MER-Factory's ``MERR``) or sentiment analysis
(MER-Factory's ``Sentiment Analysis``, ``mer-eval generate --task sentiment``).

MER-Factory writes the same ``<id>_merr_data.json`` for both tasks and records the task nowhere; only its final
summary differs: the sentiment prompt ends in a sentiment ("Therefore, the inferred sentiment is Positive"), the
emotion prompt in an emotion ("the core emotional state is surprise"). So the task is read from the summary:

* ``sentiment`` when the summary's concluding statement names a sentiment and no emotion
  (:func:`mer_eval.domain.emotion_text.sentiment_conclusion`), or when it states "the (overall / inferred)
  sentiment is X" and states no emotional state ("the overall sentiment is neutral": neutral is also an
  emotion word, but here it answers the sentiment question);
* else ``sentiment`` when the ground-truth label is a sentiment word (positive / negative / neutral spellings)
  that is no emotion (so ``neutral`` alone says nothing); an emotion the summary concludes then counts by its
  valence;
* else ``emotion``.

A run's task is the tally of its samples' (:func:`run_task`): ``sentiment``, ``emotion`` or ``mixed``.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

from mer_eval.domain.emotion_text import concluded_sentiment, sentiment_conclusion
from mer_eval.domain.facs import SENTIMENT_SYNONYMS, canonical_emotion

TASKS = ("emotion", "sentiment")

_VERB = r"(?:is|was|would be|appears to be|seems to be|can be described as)"
_SENTIMENT_STATEMENT = re.compile(r"\bsentiment(?:\s+label)?\s+" + _VERB + r"\b")
_EMOTION_STATEMENT = re.compile(r"\b(?:emotional state|emotion(?:\s+label)?)\s+" + _VERB + r"\b")


def detect_task(summary: Optional[str], label: Optional[str] = None,
                extra: Optional[dict[str, str]] = None) -> tuple[str, str]:
    """``(task, why)`` for one annotation: see the module doc for the rule."""
    text = summary or ""
    sent = sentiment_conclusion(text)
    if sent:
        return "sentiment", f"the summary concludes a sentiment ({sent!r}), not an emotion"
    low = text.lower()
    if _SENTIMENT_STATEMENT.search(low) and not _EMOTION_STATEMENT.search(low):
        f = concluded_sentiment(text)
        if f.method == "conclusion" and f.emotion:
            return "sentiment", f"the summary states the sentiment ({f.emotion!r}) and no emotional state"
    if label and label.strip():
        w = label.strip().lower()
        if w in SENTIMENT_SYNONYMS and canonical_emotion(w, extra) is None:
            return "sentiment", f"the label {label!r} is a sentiment, not an emotion"
    return "emotion", "the summary concludes an emotion or no sentiment"


def run_task(tasks: Iterable[str]) -> str:
    """``emotion`` / ``sentiment`` when every sample's task is that one, ``mixed`` otherwise (``emotion`` for
    no samples)."""
    seen = set(tasks)
    if not seen:
        return "emotion"
    return seen.pop() if len(seen) == 1 else "mixed"
