"""Checks on what a language model wrote, before it becomes annotation text.

A model's answer is not an annotation until it passes these checks. Two kinds of defect:

* **rejected** (the text is not written; the field is left empty with the reason in ``absent`` and the
  defect in ``flags.llm_output_defect``): a literal template placeholder left in (``[X]``, ``[Y]``,
  ``${name}``, ``<emotion>`` — "the core emotional state is [X]" must never be read as the emotion ``x``),
  or the prompt echoed back (a header such as ``Measured evidence:`` / ``Clues:`` on a line of its own, or
  whole lines of the filled prompt);
* **flagged** (the text is kept, the flag says what is wrong): a synthesis without the closing line the
  prompt asks for, and an audio analysis that breaks MER-Factory's contract (the transcript on the first
  line, the tone after it).

Only model-written texts are checked (the offline templates write these shapes by construction).
"""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\[\s*(?:[A-Z]|emotion|cause|emotion word|reason)\s*\]|\$\{\w+\}|<\s*(?:emotion|cause)\s*>",
                         re.IGNORECASE)
MIN_ECHO_LINE = 25  # a prompt line at least this long found verbatim in the answer is an echo
_WORD = re.compile(r"[a-z0-9']+")


def placeholders(text: str) -> list[str]:
    """The template placeholders left in ``text`` (``[X]``, ``${tone}``, ...), in order, once each."""
    return list(dict.fromkeys(m.group(0) for m in PLACEHOLDER.finditer(text or "")))


def echoed_lines(text: str, prompt: str) -> list[str]:
    """Lines of ``prompt`` repeated in ``text``: section headers (a line ending with ':') written as a line
    of the answer, and longer prompt lines found verbatim."""
    if not text or not prompt:
        return []
    answer_lines = {ln.strip().lower() for ln in text.splitlines() if ln.strip()}
    low = " ".join(text.lower().split())
    out = []
    for raw in prompt.splitlines():
        ln = raw.strip()
        if not ln:
            continue
        if ln.endswith(":") and len(ln) <= 40:
            if ln.lower() in answer_lines:
                out.append(ln)
        elif len(ln) >= MIN_ECHO_LINE and " ".join(ln.lower().split()) in low:
            out.append(ln)
    return out


def reject_reason(text: str, prompt: str) -> str | None:
    """Why ``text`` must not be written as annotation text (None: it may)."""
    ph = placeholders(text)
    if ph:
        return f"the answer contains the template placeholder(s) {', '.join(ph)} instead of content"
    echo = echoed_lines(text, prompt)
    if echo:
        return (f"the answer repeats the prompt ({len(echo)} line(s), e.g. {echo[0][:60]!r}) instead of "
                "answering it")
    return None


def _words(s: str) -> set[str]:
    return set(_WORD.findall((s or "").lower()))


def audio_contract(text: str, asr_transcript: str | None) -> str | None:
    """MER-Factory's audio analysis contract: the transcript on the first line, the tone description after
    it. None when ``text`` keeps it; else what is wrong."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    if len(lines) < 2:
        return ("the audio analysis is a single line: MER-Factory's contract is the transcript on the first "
                "line and the tone description after it")
    heard = _words(asr_transcript or "")
    if len(heard) >= 3:
        first = _words(lines[0])
        overlap = len(first & heard) / len(heard)
        if overlap < 0.3:
            return (f"the first line does not hold the transcript (it shares {overlap:.0%} of the measured "
                    f"transcript's words): {lines[0][:60]!r}")
    return None
