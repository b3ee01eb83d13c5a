"""OpenAI-compatible chat-completions providers: OpenAI, Ollama (``/v1``), vLLM, llama.cpp server, LM Studio.

Speaks the wire format directly with ``httpx.AsyncClient``: ``POST {base_url}/chat/completions`` with
``messages`` (system + user; images as ``image_url`` base64 data URLs; audio as ``input_audio`` only when
the endpoint is configured as audio-capable). Errors are mapped onto :class:`ProviderError` so the base
class retries 429 / 5xx / timeouts / connection errors and reports the rest.
"""

from __future__ import annotations

import asyncio
import base64
import json
import mimetypes
from pathlib import Path
from typing import ClassVar

import httpx
from mer_eval.generators.providers.base import (
    Capability,
    Provider,
    PreflightError,
    ProviderError,
    ProviderRequest,
    excerpt,
    parse_retry_after,
    retryable_status,
)

_IMAGE_MIME = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
}


def data_url(path: Path) -> str:
    p = Path(path)
    mime = _IMAGE_MIME.get(p.suffix.lower()) or mimetypes.guess_type(p.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(p.read_bytes()).decode('ascii')}"


class OpenAIProvider(Provider):
    config_defaults: ClassVar[dict] = {"model": "gpt-4o-mini", "base_url": "https://api.openai.com/v1",
                                       "api_key_env": "OPENAI_API_KEY"}
    name: ClassVar[str] = "openai"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.text, Capability.image})
    default_model: ClassVar[str | None] = "gpt-4o-mini"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    requires_key: ClassVar[bool] = True  # except for a server on 127.0.0.1 / localhost (Provider.key_required)
    enforce_timeout: ClassVar[bool] = True

    def __init__(self, config, cache=None, name=None):
        super().__init__(config, cache, name)
        self._clients: dict[int, httpx.AsyncClient] = {}

    @property
    def base_url(self) -> str:
        return (self.config.base_url or self.default_base_url).rstrip("/")

    def _client(self) -> httpx.AsyncClient:
        """One client per event loop (``generate`` runs each call in a fresh loop)."""
        loop = asyncio.get_running_loop()
        c = self._clients.get(id(loop))
        if c is None or c.is_closed:
            c = httpx.AsyncClient(timeout=httpx.Timeout(self.config.timeout_s))
            self._clients[id(loop)] = c
        return c

    def headers(self) -> dict:
        h = {"Content-Type": "application/json"}
        key = self.api_key()
        if key:
            h["Authorization"] = f"Bearer {key}"
        elif self.key_required():
            raise ProviderError(
                f"no API key: environment variable {self.config.api_key_env} is not set", retryable=False
            )
        return h

    def messages(self, req: ProviderRequest) -> list[dict]:
        msgs: list[dict] = []
        if req.system:
            msgs.append({"role": "system", "content": req.system})
        if not req.images and req.audio is None:
            msgs.append({"role": "user", "content": req.prompt})
            return msgs
        parts: list[dict] = [{"type": "text", "text": req.prompt}]
        for img in req.images:
            parts.append({"type": "image_url", "image_url": {"url": data_url(Path(img))}})
        if req.audio is not None:
            a = Path(req.audio)
            fmt = a.suffix.lower().lstrip(".") or "wav"
            parts.append(
                {
                    "type": "input_audio",
                    "input_audio": {"data": base64.b64encode(a.read_bytes()).decode("ascii"), "format": fmt},
                }
            )
        msgs.append({"role": "user", "content": parts})
        return msgs

    def payload(self, req: ProviderRequest) -> dict:
        p = self.params(req)
        return {
            "model": self.model_id,
            "messages": self.messages(req),
            "temperature": p["temperature"],
            "max_tokens": p["max_tokens"],
            "stream": False,
        }

    async def _call(self, req: ProviderRequest) -> tuple[str, dict]:
        url = f"{self.base_url}/chat/completions"
        headers = self.headers()
        body = self.payload(req)
        try:
            r = await self._client().post(url, json=body, headers=headers)
        except httpx.TimeoutException as e:
            err = ProviderError(
                f"timed out after {self.config.timeout_s:g} s ({type(e).__name__}) at {url}", retryable=True
            )
            # the request was sent and the server is (probably) still generating: httpx has closed the
            # connection, but a retry would queue a second generation (see Provider.agenerate)
            err.read_timeout = not isinstance(e, (httpx.ConnectTimeout, httpx.PoolTimeout))
            raise err from None
        except httpx.TransportError as e:
            raise ProviderError(
                f"connection error at {url}: {type(e).__name__}: {e}", retryable=True
            ) from None
        return self.parse(r, url)

    def parse(self, r: httpx.Response, url: str) -> tuple[str, dict]:
        if r.status_code != 200:
            raise ProviderError(
                f"HTTP {r.status_code} from {url}: {excerpt(r.text)}",
                status=r.status_code,
                retryable=retryable_status(r.status_code),
                retry_after=parse_retry_after(r.headers.get("retry-after")),
            )
        try:
            data = r.json()
        except (json.JSONDecodeError, ValueError):
            raise ProviderError(
                f"malformed response from {url} (not JSON): {excerpt(r.text)}",
                status=r.status_code,
                retryable=False,
            ) from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices or not isinstance(choices, list):
            raise ProviderError(
                f"malformed response from {url} (no choices): {excerpt(r.text)}",
                status=r.status_code,
                retryable=False,
            )
        msg = choices[0].get("message") if isinstance(choices[0], dict) else None
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise ProviderError(
                f"malformed response from {url} (no message content): {excerpt(r.text)}",
                status=r.status_code,
                retryable=False,
            )
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        finish = choices[0].get("finish_reason")
        if finish:
            usage = {**usage, "finish_reason": finish}
        if data.get("model"):
            usage = {**usage, "served_model": data["model"]}
        return content.strip(), usage

    async def apreflight(self, ask: bool = True) -> dict:
        """The key rule, then ``GET {base_url}/models`` (is the server there; does it serve the configured
        model, when it lists models), then (``ask``) one 4-token chat request."""
        info = await super().apreflight(ask=False)
        url = f"{self.base_url}/models"
        try:
            r = await self._client().get(url, headers=self.headers(), timeout=min(self.config.timeout_s, 30.0))
        except httpx.ConnectError as e:
            raise PreflightError(f"{self.name}: cannot connect to {self.base_url} ({excerpt(str(e), 80)}): is the "
                                 "server running, and is base_url right?") from None
        except httpx.TimeoutException:
            raise PreflightError(f"{self.name}: {url} did not answer within {min(self.config.timeout_s, 30.0):g} s"
                                 ) from None
        except httpx.TransportError as e:
            raise PreflightError(f"{self.name}: connection error at {url}: {type(e).__name__}: {e}") from None
        if r.status_code in (401, 403):
            raise PreflightError(f"{self.name}: HTTP {r.status_code} from {url}: the server refuses the key"
                                 f"{'' if self.api_key() else ' (none sent: set ' + str(self.config.api_key_env) + ')'}"
                                 f": {excerpt(r.text, 120)}", status=r.status_code)
        served = _model_ids(r)
        if served is not None:
            info["served_models"] = served[:20]
            if served and self.model_id not in served:
                raise PreflightError(f"{self.name}: model {self.model_id!r} is not served at {self.base_url}; it "
                                     f"serves: {', '.join(served[:8])}{' ...' if len(served) > 8 else ''} (set "
                                     f"providers.{self.name}.model)")
        if not ask:
            return info
        return {**info, **await super().apreflight(ask=True)}

    def preflight_hint(self, err: ProviderError) -> str:
        if err.status in (400, 404) and "model" in err.message.lower():
            return f"the server does not serve model {self.model_id!r} (set providers.{self.name}.model): " \
                   + err.message
        if "timed out" in err.message:
            return err.message + (" (a 4-token answer: the server is overloaded or the model is still loading; "
                                  "raise timeout_s)")
        return err.message

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        c = self._clients.pop(id(loop), None)
        if c is not None:
            await c.aclose()


class OllamaProvider(OpenAIProvider):
    """Ollama's OpenAI-compatible ``/v1`` endpoint; no key needed."""

    name: ClassVar[str] = "ollama"
    config_defaults: ClassVar[dict] = {"model": "llama3.2", "base_url": "http://localhost:11434/v1"}
    default_model: ClassVar[str | None] = "llama3.2"
    default_base_url: ClassVar[str] = "http://localhost:11434/v1"
    requires_key: ClassVar[bool] = False


def _model_ids(r: httpx.Response) -> list[str] | None:
    """The model ids a ``GET /models`` answer lists (OpenAI / vLLM / llama.cpp / Ollama / transformers serve
    shape ``{"data": [{"id": ...}]}``); None when the server has no such listing."""
    if r.status_code != 200:
        return None
    try:
        data = r.json()
    except ValueError:
        return None
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return None
    return [str(m["id"]) for m in rows if isinstance(m, dict) and m.get("id")]
