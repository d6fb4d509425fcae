"""Request fields -> a vendor's input keys, and what a model can do, as data.

A vendor module describes each model family with a ``Family`` (which key carries the first frame, how the
duration is written, which request fields the family takes) and looks families up by model-id prefix. The
same tables answer "can this model serve this request?" before any paid call, and feed the README's
capability table.

Capability vocabulary (shared by every provider; ``capabilities`` class attributes use these names):

| name | the request needs it when |
|---|---|
| ``text_to_video`` | a video request has no input image and no input video |
| ``image_to_video`` | a video request has a ``first_frame`` image (the image the video animates) |
| ``first_frame`` | a video request has a ``first_frame`` image |
| ``last_frame`` | a video request has a ``last_frame`` image |
| ``reference_images`` | a video request has ``reference`` / ``asset`` / ``style`` images |
| ``video_input`` | a video request has ``video`` (extend, remix, video-to-video) |
| ``audio`` | ``generate_audio`` is True |
| ``multiple_outputs`` | ``number_of_videos`` > 1, or image ``n`` > 1 |
| ``text_to_image`` | an image request has no input image |
| ``image_to_image`` | an image request has ``image_list`` images |
| ``inpainting`` | an image request has ``mask_image`` |
| ``negative_prompt`` | (listed, never required: a model without it ignores ``negative_prompt``) |
| ``seed`` | (listed, never required: a model without it ignores ``seed``) |
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from providers._engine.media import media_url
from router.models import AnyRequest, ImageGenerationRequest, Kind, MediaType, VideoGenerationRequest

T = TypeVar("T")

CAPABILITIES = frozenset({
    "text_to_video", "image_to_video", "first_frame", "last_frame", "reference_images", "video_input", "audio",
    "negative_prompt", "seed", "text_to_image", "image_to_image", "inpainting", "multiple_outputs",
})
#: Capabilities a model may lack without the request being refused: the field is just not sent.
SOFT_CAPABILITIES = frozenset({"negative_prompt", "seed"})
#: Video image roles -> the capabilities they need.
VIDEO_ROLE_NEEDS: dict[str, frozenset[str]] = {
    "first_frame": frozenset({"image_to_video", "first_frame"}),
    "last_frame": frozenset({"last_frame"}),
    "reference": frozenset({"reference_images"}),
    "asset": frozenset({"reference_images"}),
    "style": frozenset({"reference_images"}),
}
#: Request fields whose presence shows a soft capability.
_FIELD_CAPABILITY = {
    "negative_prompt": "negative_prompt", "seed": "seed", "generate_audio": "audio",
    "number_of_videos": "multiple_outputs", "n": "multiple_outputs",
}


def required_capabilities(kind: Kind, request: AnyRequest) -> frozenset[str]:
    """The capabilities ``request`` cannot be served without (see the vocabulary above)."""
    needs: set[str] = set()
    roles = {image["type"] for image in request.image_list}
    if isinstance(request, VideoGenerationRequest):
        if not roles and request.video is None:
            needs.add("text_to_video")
        for role in roles:
            needs |= VIDEO_ROLE_NEEDS[role]
        if request.video is not None:
            needs.add("video_input")
        if request.generate_audio:
            needs.add("audio")
        if request.number_of_videos > 1:
            needs.add("multiple_outputs")
    elif isinstance(request, ImageGenerationRequest):
        needs.add("image_to_image" if roles else "text_to_image")
        if request.mask_image is not None:
            needs.add("inpainting")
        if (request.n or 1) > 1:
            needs.add("multiple_outputs")
    return frozenset(needs)


def capability_gap(kind: Kind, request: AnyRequest, capabilities: frozenset[str], model: str) -> str | None:
    """Why a model with ``capabilities`` cannot serve ``request``, or None."""
    missing = sorted(required_capabilities(kind, request) - capabilities)
    if not missing:
        return None
    return f"model {model!r} does not support {', '.join(missing)}"


def longest_prefix(model: str, table: Mapping[str, T]) -> T | None:
    """The entry whose key is the longest prefix of ``model`` (so ``veo3.1`` can differ from ``veo3``)."""
    matches = [key for key in table if model.startswith(key)]
    return table[max(matches, key=len)] if matches else None


@dataclass(frozen=True)
class Duration:
    """How a family writes ``duration_seconds``: the key, the allowed values, string or number, a suffix."""

    key: str = "duration"
    #: Allowed whole seconds, ascending; empty means any positive value.
    allowed: tuple[int, ...] = ()
    suffix: str = ""
    number: bool = False

    def pick(self, seconds: float) -> int | None:
        """The shortest allowed duration >= ``seconds`` (rounding up), or None when it is too long."""
        if not self.allowed:
            return math.ceil(seconds)
        return next((value for value in self.allowed if value >= seconds), None)

    def render(self, seconds: float) -> str | int:
        value = self.pick(seconds)
        if value is None:
            raise ValueError(f"duration {seconds} s is longer than the longest allowed ({self.allowed[-1]} s)")
        return value if self.number else f"{value}{self.suffix}"

    def gap(self, seconds: float | None) -> str | None:
        if seconds is None or self.pick(seconds) is not None:
            return None
        return f"duration {seconds} s is longer than the model's longest ({self.allowed[-1]} s)"


Translate = Mapping[Any, Any] | Callable[[Any], Any]


@dataclass(frozen=True)
class Family:
    """How one model family spells a request. Data only; ``build_input`` applies it.

    ``keys`` maps request fields (``prompt``, ``seed``, ``aspect_ratio``, ``size``, ``n``...) to vendor keys,
    applied in order (so a later field writing the same key wins: put ``size`` after ``aspect_ratio``).
    ``images`` maps an image role to the key of one image URL, ``image_lists`` to a key taking a list.
    ``values`` translates a field's value (a dict, or a function for shapes like ``{"width":..}``).
    ``from_text``: the family can work from the prompt alone (False for image-only endpoints).
    """

    name: str
    keys: Mapping[str, str]
    images: Mapping[str, str] = field(default_factory=dict)
    image_lists: Mapping[str, str] = field(default_factory=dict)
    video: str | None = None
    mask: str | None = None
    duration: Duration | None = None
    values: Mapping[str, Translate] = field(default_factory=dict)
    from_text: bool = True

    def capabilities(self, kind: Kind) -> frozenset[str]:
        """What the family can do, derived from the keys it has (so the table cannot contradict itself)."""
        caps = {capability for name, capability in _FIELD_CAPABILITY.items() if name in self.keys}
        roles = {*self.images, *self.image_lists}
        if kind == "video":
            if self.from_text:
                caps.add("text_to_video")
            for role in roles:
                caps |= VIDEO_ROLE_NEEDS[role]
            if self.video:
                caps.add("video_input")
        else:
            caps.discard("audio")
            if self.from_text:
                caps.add("text_to_image")
            if roles:
                caps.add("image_to_image")
            if self.mask:
                caps.add("inpainting")
        return frozenset(caps)

    def gap(self, kind: Kind, request: AnyRequest, model: str) -> str | None:
        """Why this family cannot serve ``request`` (a capability, an image role, a duration), or None."""
        reason = capability_gap(kind, request, self.capabilities(kind), model)
        if reason:
            return reason
        counts: dict[str, int] = {}
        for image in request.image_list:
            counts[image["type"]] = counts.get(image["type"], 0) + 1
        for role, count in counts.items():
            if role not in self.images and role not in self.image_lists:
                return f"model {model!r} takes no {role!r} images"
            if count > 1 and role not in self.image_lists:
                return f"model {model!r} takes one {role!r} image, got {count}"
        if self.duration and isinstance(request, VideoGenerationRequest):
            return self.duration.gap(request.duration_seconds)
        return None


def _value(request: AnyRequest, name: str) -> Any:
    value = getattr(request, name, None)
    if name == "number_of_videos" and value == 1:
        return None  # the default: let the vendor use its own
    return value


def _translate(translate: Translate | None, value: Any) -> Any:
    if translate is None:
        return value
    if callable(translate):
        return translate(value)
    return translate.get(value, value)


def build_input(
    family: Family, request: AnyRequest, media: Callable[[MediaType, str], str] = media_url
) -> dict[str, Any]:
    """The vendor input for ``request``: mapped fields, durations, media as URLs / data URIs, then
    ``extra_params`` last (unknown keys pass through and the caller's explicit vendor keys win)."""
    body: dict[str, Any] = {}
    for name, key in family.keys.items():
        value = _value(request, name)
        if value is not None:
            body[key] = _translate(family.values.get(name), value)
    seconds = getattr(request, "duration_seconds", None)
    if family.duration and seconds is not None:
        body[family.duration.key] = family.duration.render(seconds)
    for image in request.image_list:
        role = image["type"]
        if role in family.image_lists:
            body.setdefault(family.image_lists[role], []).append(media(image["image"], "image/png"))
        elif role in family.images:
            body[family.images[role]] = media(image["image"], "image/png")
    video = getattr(request, "video", None)
    if family.video and video is not None:
        body[family.video] = media(video, "video/mp4")
    mask = getattr(request, "mask_image", None)
    if family.mask and mask is not None:
        body[family.mask] = media(mask, "image/png")
    body.update(request.extra_params)
    return body


__all__ = [
    "CAPABILITIES", "SOFT_CAPABILITIES", "Duration", "Family", "build_input", "capability_gap", "longest_prefix",
    "required_capabilities",
]
