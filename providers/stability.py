"""Stability AI Stable Image v2beta: synchronous multipart ``POST /v2beta/stable-image/generate/{ultra,core,sd3}``
and ``/edit/inpaint`` with ``Accept: application/json`` (base64 ``image`` + ``finish_reason`` + ``seed``).
Sources: Stability's public API reference (errors ``{id, name, errors}``, 403
``content_moderation``, ``finish_reason: CONTENT_FILTERED``).

Video: Stability discontinued its Stable Video API on 2025-07-24 ("API Price Update", 2025-07-09), so this
provider declares video unsupported and a video attempt is skipped before any call.
"""

from __future__ import annotations

from typing import Any

from providers._engine import HttpProvider, HttpRequest, VendorResponse, inline_url_inputs, media_file
from router.errors import BadProviderResponseError, ContentPolicyError
from router.handler import ProviderJob
from router.models import AnyConfig, AnyRequest, AnyResponse, ImageGenerationRequest, ImageGenerationResponse, Kind

#: Model -> endpoint (first matching prefix). sd3.x models go to the sd3 endpoint with a ``model`` field.
ENDPOINTS = (("sd3", "sd3"), ("stable-image-ultra", "ultra"), ("ultra", "ultra"), ("stable-image-core", "core"),
             ("core", "core"))
#: image-to-image strength when the request names none (``extra_params["strength"]``); inpainting takes none.
DEFAULT_STRENGTH = "0.6"


def endpoint_of(model: str) -> str:
    return next((endpoint for prefix, endpoint in ENDPOINTS if model.startswith(prefix)), "core")


class StabilityProvider(HttpProvider):
    name = "stability"
    default_base_url = "https://api.stability.ai"
    api_key_env = ("STABILITY_API_KEY",)
    kinds = frozenset({"image"})
    capabilities = {"image": frozenset({"text_to_image", "image_to_image", "inpainting"})}

    def unsupported_reason(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> str | None:
        if kind == "video":
            return "stability discontinued its video API on 2025-07-24; no video generation"
        return super().unsupported_reason(kind, config, request)

    def read_error(self, response: VendorResponse) -> tuple[str, str | None]:
        """``{"id", "name", "errors": [...]}``; the body's ``id`` is the request id when no header names one."""
        try:
            body = response.json()
            message = "; ".join(map(str, body.get("errors") or [])) or body.get("name", "")
            response.request_id = response.request_id or body.get("id")
            return message, body.get("name")
        except (ValueError, AttributeError):
            return super().read_error(response)

    async def submit(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> ProviderJob | AnyResponse:
        return await super().submit(kind, config, await inline_url_inputs(request))  # files only: fetch URLs

    def submit_request(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> HttpRequest:
        assert isinstance(request, ImageGenerationRequest)
        endpoint = endpoint_of(config.model)
        form: dict[str, Any] = {"prompt": request.prompt, "output_format": "png"}
        if request.negative_prompt:
            form["negative_prompt"] = request.negative_prompt
        if request.seed is not None:
            form["seed"] = str(request.seed)
        if request.style and endpoint == "core":
            form["style_preset"] = request.style
        if endpoint == "sd3":
            form["model"] = config.model
        if request.mask_image is not None:
            path = "v2beta/stable-image/edit/inpaint"
            form["image"] = media_file(request.image_list[0]["image"], "image")
            form["mask"] = media_file(request.mask_image, "mask")
        else:
            path = f"v2beta/stable-image/generate/{endpoint}"
            if request.aspect_ratio:
                form["aspect_ratio"] = request.aspect_ratio
            if request.image_list:
                form["image"] = media_file(request.image_list[0]["image"], "image")
                form["strength"] = str(request.extra_params.get("strength", DEFAULT_STRENGTH))
                if endpoint == "sd3":
                    form["mode"] = "image-to-image"
                form.pop("aspect_ratio", None)  # image-to-image takes the input's shape
        form.update({k: str(v) for k, v in request.extra_params.items() if k != "strength"})
        return HttpRequest("POST", path, form=form, headers={"Accept": "application/json"})

    def submitted(self, kind: Kind, config: AnyConfig, request: AnyRequest, response: VendorResponse) -> AnyResponse:
        data = response.json()
        if data.get("finish_reason") == "CONTENT_FILTERED":
            raise ContentPolicyError("stability filtered the output (finish_reason CONTENT_FILTERED)",
                                     provider=config.provider, model=config.model, provider_request_id=response.request_id)
        if not data.get("image"):
            raise BadProviderResponseError("stability answered without an image", provider=config.provider,
                                           model=config.model, provider_request_id=response.request_id)
        content_type = response.headers.get("Content-Type", "").partition("type=")[2] or "image/png"
        return ImageGenerationResponse(
            request_id="", images=[data["image"]], content_type=content_type, raw_response={
                k: v for k, v in data.items() if k != "image"},
            provider_metadata={"provider_request_id": response.request_id, "seed": data.get("seed")},
        )
