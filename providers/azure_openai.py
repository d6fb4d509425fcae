"""Azure OpenAI: the OpenAI module on Azure's URL shapes (openai-python ``lib/azure.py``).

Images use the classic deployments API ``{endpoint}/openai/deployments/{deployment}/images/...?api-version=``
(``model`` is the deployment name); Sora 2 uses the v1 API ``{endpoint}/openai/v1/videos`` (no api-version).
Auth is the ``api-key`` header. ``base_url`` is the resource endpoint, e.g. ``https://myres.openai.azure.com``.
"""

from __future__ import annotations

from providers.openai import OpenAIProvider
from router.errors import ConfigurationError
from router.models import AnyConfig, AnyRequest, Kind


class AzureOpenAIProvider(OpenAIProvider):
    name = "azure-openai"
    default_base_url = ""  # every Azure resource has its own endpoint
    api_key_env = ("AZURE_OPENAI_API_KEY",)
    request_id_headers = ("apim-request-id", "x-request-id")
    content_policy_markers = (*OpenAIProvider.content_policy_markers, "content_filter", "contentfilter", "responsibleai")

    def unsupported_reason(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> str | None:
        if not (config.base_url or config.provider_config.get("endpoint")):
            raise ConfigurationError("azure-openai needs base_url: your resource endpoint "
                                     "(https://<resource>.openai.azure.com)", provider=config.provider, model=config.model)
        if kind == "image" and not config.api_version:
            raise ConfigurationError("azure-openai images need api_version (e.g. '2025-04-01-preview')",
                                     provider=config.provider, model=config.model)
        return super().unsupported_reason(kind, config, request)

    def base_url(self, config: AnyConfig) -> str:
        return (config.base_url or config.provider_config["endpoint"]).rstrip("/") + "/openai/"

    def auth_headers(self, config: AnyConfig) -> dict[str, str]:
        return {"api-key": config.api_key} if config.api_key else {}

    def image_path(self, config: AnyConfig, operation: str) -> str:
        return f"deployments/{config.model}/images/{operation}"

    def video_path(self, config: AnyConfig, suffix: str = "") -> str:
        return f"v1/videos{suffix}"

    def image_query(self, config: AnyConfig) -> dict[str, str] | None:
        return {"api-version": config.api_version or ""}
