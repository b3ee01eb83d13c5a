"""Google Gemini through the official SDK (``google-genai``: ``from google import genai``).

Text, image, audio and video inputs go inline as bytes (``types.Part.from_bytes``); inline requests are
limited in size (about 20 MB in all), larger files are refused with a clear error instead of a silent cut.
The SDK's own retries are switched off (``HttpRetryOptions(attempts=1)``) and its errors are mapped onto
:class:`ProviderError` so the base class applies one retry policy for every provider.
``base_url`` (config) points the SDK elsewhere, e.g. a proxy or the test server.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from pathlib import Path
from typing import Any, ClassVar

from mer_eval.generators.providers.base import (
    Capability,
    Provider,
    ProviderError,
    ProviderRequest,
    excerpt,
    parse_retry_after,
    retryable_status,
)

INLINE_LIMIT_BYTES = 20 * 1024 * 1024

_MIME = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".wav": "audio/wav",
    ".mp3": "audio/mp3",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".m4a": "audio/aac",
    ".aac": "audio/aac",
    ".mp4": "video/mp4",
    ".avi": "video/x-msvideo",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".mpeg": "video/mpeg",
    ".mpg": "video/mpeg",
}


def _transport_errors() -> tuple[tuple, tuple]:
    """(timeout exceptions, transport exceptions) of httpx and, when installed, its fork httpx2 (which this
    SDK version prefers)."""
    timeouts: list = []
    transport: list = []
    for mod in ("httpx", "httpx2"):
        try:
            m = __import__(mod)
        except ImportError:
            continue
        timeouts.append(m.TimeoutException)
        transport.append(m.TransportError)
    return tuple(timeouts), tuple(transport)


def gemini_finish_reason(value: Any) -> str | None:
    """Gemini's ``FinishReason`` in the OpenAI spelling: ``MAX_TOKENS`` -> ``length``, ``STOP`` -> ``stop``,
    any other reason (``SAFETY``, ``RECITATION`` ...) lower-cased; None when the answer does not say."""
    if value is None:
        return None
    name = getattr(value, "name", None) or str(value)
    name = name.rsplit(".", 1)[-1].strip().upper()
    if not name or name == "FINISH_REASON_UNSPECIFIED":
        return None
    return {"MAX_TOKENS": "length", "STOP": "stop"}.get(name, name.lower())


def mime_of(path: Path) -> str:
    return _MIME.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class GeminiProvider(Provider):
    config_defaults: ClassVar[dict] = {"model": "gemini-2.0-flash", "api_key_env": "GEMINI_API_KEY"}
    name: ClassVar[str] = "gemini"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.text, Capability.image, Capability.audio, Capability.video}
    )
    default_model: ClassVar[str | None] = "gemini-2.0-flash"
    requires_key: ClassVar[bool] = True

    def __init__(self, config, cache=None, name=None):
        super().__init__(config, cache, name)
        self._clients: dict[int, Any] = {}

    def _client(self):
        from google import genai
        from google.genai import types

        loop = asyncio.get_running_loop()
        c = self._clients.get(id(loop))
        if c is not None:
            return c
        key = self.api_key()
        if not key:
            env = self.config.api_key_env or "(api_key_env not configured)"
            raise ProviderError(f"no API key: environment variable {env} is not set", retryable=False)
        opts: dict[str, Any] = {
            "timeout": int(self.config.timeout_s * 1000),  # milliseconds
            "retry_options": types.HttpRetryOptions(attempts=1),  # retries are ours
        }
        if self.config.base_url:
            opts["base_url"] = self.config.base_url
        c = genai.Client(api_key=key, http_options=types.HttpOptions(**opts))
        self._clients[id(loop)] = c
        return c

    def contents(self, req: ProviderRequest) -> list:
        from google.genai import types

        parts: list = []
        total = 0
        for p in req.files():
            p = Path(p)
            size = p.stat().st_size
            total += size
            if total > INLINE_LIMIT_BYTES:
                raise ProviderError(
                    f"inline inputs exceed {INLINE_LIMIT_BYTES // (1024 * 1024)} MB at {p} "
                    f"({size} bytes); shorten or downscale the media",
                    retryable=False,
                )
            parts.append(types.Part.from_bytes(data=p.read_bytes(), mime_type=mime_of(p)))
        parts.append(types.Part.from_text(text=req.prompt))
        return [types.Content(role="user", parts=parts)]

    async def _call(self, req: ProviderRequest) -> tuple[str, dict]:
        from google.genai import errors, types

        timeouts, transport = _transport_errors()

        client = self._client()
        p = self.params(req)
        cfg = types.GenerateContentConfig(
            system_instruction=req.system or None,
            temperature=p["temperature"],
            max_output_tokens=p["max_tokens"],
        )
        try:
            resp = await client.aio.models.generate_content(
                model=self.model_id, contents=self.contents(req), config=cfg
            )
        except errors.APIError as e:
            status = getattr(e, "code", None)
            r = getattr(e, "response", None)
            headers = getattr(r, "headers", None) or {}
            retry_after = parse_retry_after(headers.get("retry-after")) if hasattr(headers, "get") else None
            msg = getattr(e, "message", None) or excerpt(getattr(e, "details", "") or str(e))
            raise ProviderError(
                f"HTTP {status} from Gemini: {excerpt(msg)}",
                status=status,
                retryable=retryable_status(status),
                retry_after=retry_after,
            ) from None
        except timeouts as e:
            raise ProviderError(
                f"timed out after {self.config.timeout_s:g} s ({type(e).__name__})", retryable=True
            ) from None
        except transport as e:
            raise ProviderError(f"connection error: {type(e).__name__}: {e}", retryable=True) from None
        except (json.JSONDecodeError, ValueError) as e:  # includes pydantic ValidationError
            raise ProviderError(
                f"malformed response from Gemini: {type(e).__name__}: {excerpt(str(e))}", retryable=False
            ) from None
        try:
            text = resp.text
        except (ValueError, AttributeError) as e:
            raise ProviderError(f"malformed response from Gemini: {e}", retryable=False) from None
        if not text:
            cands = getattr(resp, "candidates", None) or []
            finish = getattr(cands[0], "finish_reason", None) if cands else None
            block = getattr(getattr(resp, "prompt_feedback", None), "block_reason", None)
            raise ProviderError(
                f"empty response from Gemini ({len(cands)} candidate(s), finish_reason={finish}, "
                f"block_reason={block})",
                retryable=False,
            )
        usage: dict = {}
        um = getattr(resp, "usage_metadata", None)
        if um is not None:
            usage = {
                k: v
                for k, v in {
                    "prompt_tokens": getattr(um, "prompt_token_count", None),
                    "completion_tokens": getattr(um, "candidates_token_count", None),
                    "total_tokens": getattr(um, "total_token_count", None),
                }.items()
                if v is not None
            }
        cands = getattr(resp, "candidates", None) or []
        finish = gemini_finish_reason(getattr(cands[0], "finish_reason", None) if cands else None)
        if finish:  # MAX_TOKENS: the text is cut at max_output_tokens (resp.text still returns the part)
            usage["finish_reason"] = finish
        if getattr(resp, "model_version", None):
            usage["served_model"] = resp.model_version
        return text.strip(), usage

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        c = self._clients.pop(id(loop), None)
        if c is not None:
            await c.aio.aclose()
