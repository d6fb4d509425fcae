"""Print the README's provider capability table from the handlers' own capability data.

    .venv/bin/python scripts/provider_table.py
"""

from __future__ import annotations

from router.registry import get_handler, known_providers

VIDEO = ("text_to_video", "image_to_video", "first_frame", "last_frame", "reference_images", "video_input", "audio")
IMAGE = ("text_to_image", "image_to_image", "inpainting", "multiple_outputs")


def main() -> None:
    header = ["provider", "env var", *VIDEO, *IMAGE]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in known_providers():
        handler = get_handler(name)
        caps = getattr(handler, "capabilities", {}) or {}
        if name == "mock":
            caps = {"video": frozenset(VIDEO), "image": frozenset(IMAGE)}
        env = ", ".join(getattr(handler, "api_key_env", ())) or "—"
        cells = ["✓" if c in caps.get("video", ()) else "" for c in VIDEO]
        cells += ["✓" if c in caps.get("image", ()) else "" for c in IMAGE]
        print(f"| `{name}` | {env} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
