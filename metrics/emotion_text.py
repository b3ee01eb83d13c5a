"""Moved to :mod:`mer_eval.domain.emotion_text`. The old name stays importable (the same module object) for code
outside this repository, e.g. metrics registered through the ``mer_eval.metrics`` entry-point group."""

import sys

from mer_eval.domain import emotion_text as _moved

sys.modules[__name__] = _moved
