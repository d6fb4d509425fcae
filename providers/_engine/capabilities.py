"""What a request needs, in one vocabulary every provider declares its support in (``VOCABULARY``).

Only hard needs are checked: a field a provider ignores (seed, negative prompt) does not skip an attempt, an
input it cannot take does.
"""

from __future__ import annotations

from router.models import AnyRequest, ImageGenerationRequest, Kind, VideoGenerationRequest

#: Kind -> every capability name, in the README table's column order.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "video": ("text_to_video", "image_to_video", "first_frame", "last_frame", "reference_images", "video_input",
              "audio", "multiple_outputs"),
    "image": ("text_to_image", "image_to_image", "inpainting", "multiple_outputs"),
}

VIDEO_ROLES = {"first_frame": "first_frame", "last_frame": "last_frame", "reference": "reference_images",
               "asset": "reference_images", "style": "reference_images"}


def needs(kind: Kind, request: AnyRequest) -> set[str]:
    """The capabilities ``request`` cannot be served without."""
    if kind == "video":
        assert isinstance(request, VideoGenerationRequest)
        out = {VIDEO_ROLES[image["type"]] for image in request.image_list}
        # The mode is set by the richest input: a video to extend or remix is not a text-to-video request.
        if request.video is not None:
            out.add("video_input")
        else:
            out.add("image_to_video" if request.image_list else "text_to_video")
        if request.generate_audio:
            out.add("audio")
        if request.number_of_videos > 1:
            out.add("multiple_outputs")
        return out
    assert isinstance(request, ImageGenerationRequest)
    out = {"image_to_image" if request.image_list else "text_to_image"}
    if request.mask_image is not None:
        out.add("inpainting")
    if (request.n or 1) > 1:
        out.add("multiple_outputs")
    return out


def missing_reason(kind: Kind, request: AnyRequest, supported: frozenset[str], who: str) -> str | None:
    lacking = sorted(needs(kind, request) - supported)
    if not lacking:
        return None
    return f"{who} cannot do {', '.join(lacking)} (supports: {', '.join(sorted(supported)) or 'nothing'})"
