"""Text helpers shared by generators and metrics (no model libraries here)."""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_SENT_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])|\n+")
_ABBREV = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|Prof|St|vs|etc|e\.g|i\.e)\.$", re.I)


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text or ""))


def cjk_ratio(text: str) -> float:
    chars = [c for c in (text or "") if not c.isspace()]
    return sum(1 for c in chars if _CJK.match(c)) / len(chars) if chars else 0.0


def split_sentences(text: str) -> list[str]:
    """Split on sentence-final punctuation (Latin and CJK) and line breaks; keeps abbreviations joined."""
    if not text:
        return []
    parts = [p.strip() for p in _SENT_END.split(text.strip()) if p and p.strip()]
    out: list[str] = []
    for p in parts:
        if out and _ABBREV.search(out[-1]):
            out[-1] = f"{out[-1]} {p}"
        else:
            out.append(p)
    return out


def words(text: str) -> list[str]:
    """Lower-case word tokens (letters, digits, apostrophes)."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", (text or "").lower())
