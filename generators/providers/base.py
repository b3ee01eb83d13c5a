"""Provider base class: one place for caching, rate limiting, retries and error reporting.

A provider turns a :class:`ProviderRequest` (prompt, optional system text, optional image/audio/video
files, measured signals in ``context``) into text. Subclasses implement only :meth:`Provider._call`
(one raw request -> ``(text, usage)``; ``usage["finish_reason"]`` says why generation stopped, ``"length"``
when the answer was cut at ``max_tokens``); :meth:`Provider.agenerate` wraps it with

1. the content-addressed cache (:class:`mer_eval.cache.Cache`; errors and empty text are never cached; an
   answer cut at the token limit is cached with its ``finish_reason``, so a cache hit is flagged as truncated
   exactly like the request that made it),
2. a per-instance rate limiter (``rate_limit_per_s``, minimum interval between request starts, shared by
   every request of that provider instance, loop- and thread-agnostic),
3. retries on retryable failures (HTTP 429 / 5xx, timeouts, connection errors) with exponential backoff
   ``backoff_s * 2**attempt`` plus jitter, honouring ``Retry-After`` when the server gives one,
4. a final :class:`ProviderError` that says why (status, body excerpt, attempts) with any API key
   removed from the text.

API keys come only from the environment variable named by ``api_key_env``; they are never written to
the cache, a log or an error message.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mer_eval.cache import file_sha256, text_sha256

if TYPE_CHECKING:  # pragma: no cover
    from mer_eval.cache import Cache
    from mer_eval.config import ProviderConfig

log = logging.getLogger("mer_eval.providers")

CACHE_NAMESPACE = "provider"
CACHE_VERSION = "2"  # 2: entries record finish_reason (v1 entries could not say whether they were cut)
MAX_WAIT_S = 300.0  # longest single wait between attempts, whatever Retry-After says
BODY_EXCERPT = 300


class Capability(str, Enum):
    text = "text"
    image = "image"
    audio = "audio"
    video = "video"


# What a pipeline falls back to when a provider lacks a modality (the CapabilityMissing message says it).
FALLBACKS: dict[Capability, str] = {
    Capability.image: "a text description of the measured facial signals (AUs, FER) from request.context",
    Capability.audio: "the transcript and measured prosody as text from request.context",
    Capability.video: "sampled frames sent as images, or the measured signals as text when images are "
    "not supported either",
    Capability.text: "no fallback (every provider must accept text)",
}


@dataclass
class ProviderRequest:
    prompt: str
    system: str | None = None
    images: list[Path] = field(default_factory=list)
    audio: Path | None = None
    video: Path | None = None
    max_tokens: int | None = None  # None: provider config
    temperature: float | None = None  # None: provider config
    purpose: str = ""  # "visual_description" | "tone" | "video_description" | "synthesis" | ...
    context: dict = field(default_factory=dict)  # structured measured signals (AUs, prosody, FER, transcript)

    def needs(self) -> set[Capability]:
        caps = {Capability.text}
        if self.images:
            caps.add(Capability.image)
        if self.audio is not None:
            caps.add(Capability.audio)
        if self.video is not None:
            caps.add(Capability.video)
        return caps

    def files(self) -> list[Path]:
        out = [Path(p) for p in self.images]
        if self.audio is not None:
            out.append(Path(self.audio))
        if self.video is not None:
            out.append(Path(self.video))
        return out


FINISH_LENGTH = "length"  # the normalised finish_reason of an answer cut at the token limit


@dataclass
class ProviderResponse:
    text: str
    model: str
    provider: str
    cached: bool = False
    usage: dict = field(default_factory=dict)
    attempts: int = 1  # 0 for a cache hit
    # why generation stopped, normalised: "stop" (the model ended), "length" (cut at max_tokens), another
    # provider-specific reason in lower case, or None when the provider does not say
    finish_reason: str | None = None

    @property
    def truncated(self) -> bool:
        """The answer was cut at the token limit: its end is missing."""
        return self.finish_reason == FINISH_LENGTH


class ProviderError(RuntimeError):
    """A request failed. ``retryable`` failures are retried by :meth:`Provider.agenerate`."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        attempts: int = 0,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = attempts

    def to_dict(self) -> dict:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "status": self.status,
            "retryable": self.retryable,
            "attempts": self.attempts,
        }


class PreflightError(ProviderError):
    """The provider cannot answer at all (no key, no server, wrong model, no answer in time): one line."""


def is_loopback(url: str | None) -> bool:
    """Whether ``url`` points at this machine (127.0.0.0/8, ::1, localhost): a local server."""
    if not url:
        return False
    from urllib.parse import urlsplit

    host = (urlsplit(url if "//" in url else "//" + url).hostname or "").lower()
    return host == "localhost" or host.endswith(".localhost") or host == "::1" or host.startswith("127.")


class CapabilityMissing(ProviderError):
    def __init__(self, provider: str, capability: Capability | str, fallback: str):
        cap = Capability(capability)
        self.provider = provider
        self.capability = cap
        self.fallback = fallback
        super().__init__(
            f"provider {provider!r} does not support {cap.value} input; falling back to {fallback}",
            retryable=False,
        )


# ---- helpers ---------------------------------------------------------------------------------------


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (``"1"``, ``"2.5"``) or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    v = str(value).strip()
    if not v:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def retryable_status(status: int | None) -> bool:
    return status is not None and (status == 429 or status == 408 or 500 <= status <= 599)


def _finish(value: Any) -> str | None:
    """A finish reason as a lower-case string (None when absent)."""
    if value is None or value == "":
        return None
    return str(value).strip().lower() or None


def excerpt(text: Any, n: int = BODY_EXCERPT) -> str:
    s = text if isinstance(text, str) else repr(text)
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n] + "..."


class RateLimiter:
    """Minimum interval between request starts (``1 / rate``), shared by all callers of one instance.

    Slots are reserved under a thread lock and waited for with ``asyncio.sleep``, so the limiter works
    across event loops (``generate`` uses a fresh loop per call) and threads.
    """

    def __init__(self, rate_per_s: float | None):
        self.interval = (1.0 / rate_per_s) if rate_per_s else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Seconds to wait before the caller may start."""
        if self.interval <= 0:
            return 0.0
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
            return start - now

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


# ---- the base class -------------------------------------------------------------------------------


class Provider:
    name: ClassVar[str] = "base"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.text})
    default_model: ClassVar[str | None] = None
    requires_key: ClassVar[bool] = False  # True: a missing key is an error at call time
    # this provider's defaults for its config section (providers.<name>): declared once, here
    config_defaults: ClassVar[dict] = {}
    # who writes the texts (mer_eval.schema.TextOrigin.producer): a language model, unless a subclass
    # builds them by templates (the offline provider)
    producer: ClassVar[str] = "llm"
    # network providers: cancel a request still running at timeout_s + 5 s (local models run to the end)
    enforce_timeout: ClassVar[bool] = False

    def __init__(self, config: ProviderConfig, cache: Cache | None = None, name: str | None = None):
        self.config = config
        self.cache = cache
        if name:
            self.name = name  # instance attribute shadows the class name (e.g. a second openai endpoint)
        caps = getattr(config, "capabilities", None)
        if caps:  # configured capabilities replace the class defaults (e.g. an audio-capable openai server)
            self._caps = frozenset(Capability(c) for c in caps) | {Capability.text}
        else:
            self._caps = frozenset(type(self).capabilities)
        self.limiter = RateLimiter(config.rate_limit_per_s)
        self.stats = {"requests": 0, "attempts": 0, "retries": 0, "cache_hits": 0, "errors": 0}
        budget = getattr(config, "retry_budget", None)
        self._retry_budget: int | None = budget  # retries left to this instance (None: no run-wide budget)
        self._budget_lock = threading.Lock()

    # -- identity ----------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.config.model or self.default_model or self.name

    @property
    def revision(self) -> str | None:
        """Weights sha256 (local models) or None (remote models are identified by their id only)."""
        return None

    # -- secrets -----------------------------------------------------------------------------------
    def key_required(self) -> bool:
        """A missing key is an error: the provider needs one and the endpoint is not a local server (a
        server on 127.0.0.1 / localhost is taken to need no key; set the key env anyway if yours does)."""
        return bool(self.requires_key and self.config.api_key_env
                    and not is_loopback(getattr(self.config, "base_url", None)))

    def api_key(self) -> str | None:
        env = self.config.api_key_env
        if not env:
            return None
        key = os.environ.get(env)
        return key or None

    def redact(self, text: str) -> str:
        key = self.api_key()
        if key and len(key) >= 4:
            text = text.replace(key, "[REDACTED]")
        return text

    # -- capabilities ------------------------------------------------------------------------------
    def supports(self, cap: Capability | str) -> bool:
        return Capability(cap) in self._caps

    def fallback_for(self, cap: Capability) -> str:
        if cap == Capability.video and self.supports(Capability.image):
            return "sampled frames sent as images"
        return FALLBACKS[cap]

    def check(self, req: ProviderRequest) -> None:
        """Raise :class:`CapabilityMissing` for the first thing ``req`` needs that this provider lacks."""
        for cap in (Capability.text, Capability.image, Capability.audio, Capability.video):
            if cap in req.needs() and not self.supports(cap):
                raise CapabilityMissing(self.name, cap, self.fallback_for(cap))

    # -- provenance --------------------------------------------------------------------------------
    def inputs_used(self, req: ProviderRequest, shown: list[str]) -> list[str]:
        """The fields an answer to ``req`` is written from. ``shown``: the evidence fields the prompt filled
        and the media attached (see the pipeline); a model may use any of them, so all of them count."""
        return list(shown)

    def conclusion_from(self, context: dict) -> list[str] | None:
        """The signals a deterministic rule decided the concluded emotion from; None when a model decided."""
        return None

    # -- parameters --------------------------------------------------------------------------------
    def params(self, req: ProviderRequest) -> dict:
        return {
            "temperature": self.config.temperature if req.temperature is None else req.temperature,
            "max_tokens": self.config.max_tokens if req.max_tokens is None else req.max_tokens,
        }

    def cache_key(self, req: ProviderRequest) -> str:
        files = {}
        for kind, paths in (
            ("images", req.images),
            ("audio", [req.audio] if req.audio else []),
            ("video", [req.video] if req.video else []),
        ):
            files[kind] = [file_sha256(Path(p)) for p in paths]
        context_blob = json.dumps(req.context, sort_keys=True, default=str)
        blob = json.dumps(
            {
                "provider": self.name,
                "model": self.model_id,
                "revision": self.revision,
                "system": text_sha256(req.system),
                "prompt": text_sha256(req.prompt),
                "files": files,
                "context": hashlib.sha256(context_blob.encode()).hexdigest(),
                "purpose": req.purpose,
                "params": self.params(req),
                "v": CACHE_VERSION,
            },
            sort_keys=True,
        )
        return CACHE_NAMESPACE + ":" + hashlib.sha256(blob.encode()).hexdigest()

    # -- the request loop --------------------------------------------------------------------------
    def backoff(self, attempt: int, err: ProviderError) -> float:
        """Wait before attempt ``attempt + 1``: Retry-After when given, else backoff_s * 2**attempt + jitter."""
        if err.retry_after is not None:
            return min(MAX_WAIT_S, err.retry_after)
        base = self.config.backoff_s * (2**attempt)
        return min(MAX_WAIT_S, base + random.uniform(0, 0.25 * base))

    def _classify(self, e: BaseException) -> ProviderError | None:
        """Map a library exception onto ProviderError; None lets it propagate (a bug, not a provider fault)."""
        if isinstance(e, ProviderError):
            return e
        if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
            err = ProviderError(f"timed out after {self.config.timeout_s:g} s", retryable=True)
            err.read_timeout = True  # we cannot tell whether the server got the request: assume it did
            return err
        if isinstance(e, ConnectionError):
            return ProviderError(f"connection error: {type(e).__name__}: {e}", retryable=True)
        return None

    def _check_files(self, req: ProviderRequest) -> None:
        for p in req.files():
            if not Path(p).is_file():
                raise ProviderError(f"input file {p} does not exist", retryable=False)

    async def agenerate(self, req: ProviderRequest) -> ProviderResponse:
        self.check(req)
        self._check_files(req)
        self.stats["requests"] += 1
        key = self.cache_key(req) if self.cache is not None else None
        if key is not None:
            hit = self.cache.get(key)
            if isinstance(hit, dict) and isinstance(hit.get("text"), str) and hit["text"].strip():
                self.stats["cache_hits"] += 1
                usage = hit.get("usage") if isinstance(hit.get("usage"), dict) else {}
                return ProviderResponse(
                    text=hit["text"],
                    model=hit.get("model", self.model_id),
                    provider=hit.get("provider", self.name),
                    cached=True,
                    usage=usage,
                    attempts=0,
                    finish_reason=_finish(hit.get("finish_reason") or usage.get("finish_reason")),
                )
        last: ProviderError | None = None
        attempts = 0
        for attempt in range(self.config.max_retries + 1):
            await self.limiter.acquire()
            attempts += 1
            self.stats["attempts"] += 1
            try:
                # the client stops waiting at timeout_s even when a library ignores its own timeout; the
                # cancelled request's connection is closed (a server may still compute the answer)
                text, usage = await self._bounded(self._call(req))
                if not isinstance(text, str) or not text.strip():
                    raise ProviderError(f"empty response text from {self.model_id}", retryable=False)
            except Exception as e:
                err = self._classify(e)
                if err is None:
                    raise
                last = err
                if not err.retryable or attempt >= self.config.max_retries:
                    break
                if getattr(err, "read_timeout", False) and not getattr(self.config, "retry_read_timeout", False):
                    # the server took the request and is probably still generating: a retry would queue a
                    # second generation beside the abandoned one (the connection is closed; a server may
                    # keep computing the abandoned answer anyway)
                    last = ProviderError(err.message + "; not retried (a read timeout: the server may still be "
                                         "generating; raise timeout_s, or set retry_read_timeout=true)",
                                         status=err.status, retryable=False)
                    break
                if not self._take_retry():
                    last = ProviderError(err.message + f"; not retried: this run's retry budget "
                                         f"({self.config.retry_budget}) is spent", status=err.status,
                                         retryable=False)
                    break
                wait = self.backoff(attempt, err)
                self.stats["retries"] += 1
                log.info(
                    "%s: attempt %d failed (%s); retrying in %.2f s",
                    self.name,
                    attempts,
                    self.redact(err.message),
                    wait,
                )
                await asyncio.sleep(wait)
                continue
            usage = dict(usage or {})
            resp = ProviderResponse(
                text=text,
                model=self.model_id,
                provider=self.name,
                cached=False,
                usage=usage,
                attempts=attempts,
                finish_reason=_finish(usage.get("finish_reason")),
            )
            if resp.truncated:
                log.warning("%s (%s): answer for %r cut at the token limit (finish_reason length)",
                            self.name, self.model_id, req.purpose or "request")
            if key is not None:
                # a truncated answer is cached too, with its finish_reason: a hit is flagged the same way
                self.cache.put(
                    key,
                    {
                        "text": text,
                        "model": resp.model,
                        "provider": resp.provider,
                        "revision": self.revision,
                        "usage": resp.usage,
                        "finish_reason": resp.finish_reason,
                    },
                )
            return resp
        assert last is not None
        self.stats["errors"] += 1
        where = f"{self.name} ({self.model_id})"
        status = f" HTTP {last.status}" if last.status is not None else ""
        retried = "" if last.retryable or attempts == 1 else " (not retryable)"
        if last.retryable:
            msg = f"{where}: gave up after {attempts} attempt(s);{status} {last.message}"
        else:
            msg = f"{where}: failed on attempt {attempts}{retried};{status} {last.message}"
        raise ProviderError(
            self.redact(msg),
            status=last.status,
            retryable=False,
            retry_after=last.retry_after,
            attempts=attempts,
        ) from None

    async def _bounded(self, call):
        if not self.enforce_timeout:
            return await call
        return await asyncio.wait_for(call, self.config.timeout_s + 5.0)

    def _take_retry(self) -> bool:
        """Spend one retry of the run-wide budget; False when it is spent."""
        with self._budget_lock:
            if self._retry_budget is None:
                return True
            if self._retry_budget <= 0:
                return False
            self._retry_budget -= 1
            return True

    # -- preflight ---------------------------------------------------------------------------------
    async def apreflight(self, ask: bool = True) -> dict:
        """Check once, before any sample, that this provider can answer: the key (when one is needed),
        then (``ask``) one tiny request (4 tokens, no cache, no retry). Returns what answered; raises
        :class:`PreflightError` with one line naming what is wrong."""
        if self.key_required() and not self.api_key():
            raise PreflightError(f"{self.name}: no API key: environment variable {self.config.api_key_env} is "
                                 f"not set (needed for {getattr(self.config, 'base_url', None) or 'the remote API'}"
                                 "; a server on 127.0.0.1/localhost needs none)")
        info = {"provider": self.name, "model": self.model_id}
        if not ask:
            return info
        req = ProviderRequest(prompt="Reply with the single word: ok", max_tokens=4, temperature=0.0,
                              purpose="preflight")
        t0 = time.perf_counter()
        try:
            text, usage = await self._bounded(self._call(req))
        except Exception as e:
            err = self._classify(e)
            if err is None:
                raise
            raise PreflightError(self.redact(f"{self.name} ({self.model_id}): {self.preflight_hint(err)}"),
                                 status=err.status) from None
        info.update(seconds=round(time.perf_counter() - t0, 3), answer=excerpt(text, 40),
                    served_model=(usage or {}).get("served_model"))
        return info

    def preflight_hint(self, err: ProviderError) -> str:
        """One line for a failed preflight request (subclasses name their server's usual causes)."""
        return err.message

    def preflight(self, ask: bool = True) -> dict:
        async def run() -> dict:
            try:
                return await self.apreflight(ask)
            finally:
                await self.aclose()

        return asyncio.run(run())

    def generate(self, req: ProviderRequest) -> ProviderResponse:
        """Synchronous wrapper for simple callers (not from inside a running event loop)."""

        async def run() -> ProviderResponse:
            try:
                return await self.agenerate(req)
            finally:
                await self.aclose()

        return asyncio.run(run())

    async def _call(self, req: ProviderRequest) -> tuple[str, dict]:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None

    def describe(self) -> dict:
        """For run manifests: what answered (never the key)."""
        return {
            "provider": self.name,
            "model": self.model_id,
            "revision": self.revision,
            "base_url": self.config.base_url,
            "capabilities": sorted(c.value for c in self._caps),
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
