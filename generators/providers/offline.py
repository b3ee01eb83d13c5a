"""The offline provider (default): no language model, fully deterministic.

Every text is built by templates from ``request.context`` -- the measured signals (AUs, AU pseudo-labels,
FER probabilities, prosody, transcript) -- for each ``purpose``. It reads measured signals, not pixels, so
it accepts requests with images/audio/video attached (and ignores the files) but it never describes a
scene: for ``visual_description`` / ``video_description`` :meth:`OfflineProvider.absent_reason` says why
the field stays empty (MER-Factory writes ``""`` for a missing modality; the pipeline does the same and
records the reason in ``mer_eval_meta.json``). Called anyway, those purposes raise :class:`ProviderError`
rather than return invented text.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

from mer_eval.generators import synthesis
from mer_eval.generators.providers.base import Capability, Provider, ProviderError, ProviderRequest

OFFLINE_VERSION = "offline-templates-v1"
NO_VISION = "visual scene not described (offline provider has no vision model)"
NO_VIDEO = "video content not described (offline provider has no vision model)"
# the code that writes the texts: its content is the provider's revision, so a changed template (or a
# mer-eval upgrade) never serves texts cached from the old code
TEMPLATE_FILES = (Path(synthesis.__file__), Path(__file__))


def template_revision(files=None) -> str:
    h = hashlib.sha256()
    for f in files or TEMPLATE_FILES:
        h.update(Path(f).read_bytes())
    return h.hexdigest()


class OfflineProvider(Provider):
    config_defaults: ClassVar[dict] = {}
    name: ClassVar[str] = "offline"
    producer: ClassVar[str] = "template"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.text, Capability.image, Capability.audio, Capability.video})
    default_model: ClassVar[str | None] = OFFLINE_VERSION

    PURPOSES: ClassVar[tuple[str, ...]] = ("tone", "synthesis", "au_description", "coarse",
                                           "visual_description", "video_description")

    @property
    def model_id(self) -> str:
        # the templates are the model; a configured model name cannot change what they say
        return OFFLINE_VERSION

    @property
    def revision(self) -> str:
        return template_revision()

    def absent_reason(self, purpose: str) -> str | None:
        """Why this provider leaves a field empty (None: it writes the field)."""
        if purpose == "visual_description":
            return NO_VISION
        if purpose == "video_description":
            return NO_VIDEO
        return None

    def inputs_used(self, req: ProviderRequest, shown: list[str]) -> list[str]:
        """Exactly the clues the template put into the text (not every field the prompt would show)."""
        return synthesis.offline_inputs(req.purpose, dict(req.context or {}))

    def conclusion_from(self, context: dict) -> list[str] | None:
        """The summary's X is voted by a rule (:func:`synthesis.vote`) from these signals, or is the label."""
        return synthesis.conclusion_signals(dict(context or {}))

    def render(self, req: ProviderRequest) -> str:
        ev = dict(req.context or {})
        p = req.purpose
        if p == "tone":
            return synthesis.offline_tone(ev)
        if p == "synthesis":
            return synthesis.offline_summary(ev)
        if p == "au_description":
            return synthesis.offline_au_description(ev)
        if p == "coarse":
            return synthesis.coarse_description(ev)
        reason = self.absent_reason(p)
        if reason:
            raise ProviderError(f"offline provider: {reason}", retryable=False)
        raise ProviderError(f"offline provider: unknown purpose {p!r}; known: {', '.join(self.PURPOSES)}",
                            retryable=False)

    async def apreflight(self, ask: bool = True) -> dict:
        """Templates need no server, key or model: always ready."""
        return {"provider": self.name, "model": self.model_id, "answer": "templates (no request made)"}

    async def _call(self, req: ProviderRequest) -> tuple[str, dict]:
        text = self.render(req)
        # a template is never cut: finish_reason stop
        return text, {"template": OFFLINE_VERSION, "purpose": req.purpose, "finish_reason": "stop"}
