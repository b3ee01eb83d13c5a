"""Model providers for ``mer-eval generate`` (registry names in :mod:`mer_eval.registry`).

Only the base contract is imported here; concrete providers load lazily through the registry so that
``mer-eval --help`` imports neither httpx, google-genai nor torch.
"""

from mer_eval.generators.providers.base import (  # noqa: F401
    Capability,
    CapabilityMissing,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
)
