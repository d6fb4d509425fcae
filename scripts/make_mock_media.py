"""Make the mock provider's sample videos: one small playable H.264 MP4 per aspect ratio.

Run once by hand (the outputs are committed data): ``.venv/bin/python scripts/make_mock_media.py``.
Uses a system ``ffmpeg`` if present, else the one shipped in the ``imageio-ffmpeg`` wheel
(``pip install imageio-ffmpeg``; not a project dependency).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "providers" / "_media"
DURATION_SECONDS = 2.0
FPS = 8
#: aspect ratio -> (width, height); tiny, even sizes keep each file a few KB.
SIZES = {"16:9": (256, 144), "9:16": (144, 256), "1:1": (192, 192), "4:3": (192, 144), "21:9": (336, 144)}


def ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg  # type: ignore[import-not-found]

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def make(exe: str, aspect_ratio: str, width: int, height: int) -> dict[str, object]:
    path = OUT / f"mock-{aspect_ratio.replace(':', 'x')}.mp4"
    source = f"testsrc2=size={width}x{height}:rate={FPS}:duration={DURATION_SECONDS}"
    subprocess.run(
        [exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, "-c:v", "libx264",
         "-preset", "veryslow", "-crf", "40", "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-an",
         "-map_metadata", "-1", "-fflags", "+bitexact", str(path)],
        check=True,
    )
    # Read back what ffmpeg wrote rather than trusting what we asked for.
    probe = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", probe).groups()  # type: ignore[union-attr]
    stream = re.search(r"Stream #.*Video: h264.*?, (\d+)x(\d+)\b.*?, ([\d.]+) fps", probe)
    assert stream, f"no H.264 video stream line for {path.name}:\n{probe}"
    real_w, real_h, real_fps = int(stream[1]), int(stream[2]), float(stream[3])
    duration = round(int(h) * 3600 + int(m) * 60 + float(s), 2)
    # Fail loudly if the file is not what we asked for: the manifest must describe real bytes.
    assert (real_w, real_h, real_fps, duration) == (width, height, FPS, DURATION_SECONDS), probe
    assert "Audio:" not in probe, f"{path.name} has an audio stream"
    data = path.read_bytes()
    return {
        "file": path.name, "aspect_ratio": aspect_ratio, "width": real_w, "height": real_h,
        "duration_seconds": duration, "fps": FPS,
        "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    exe = ffmpeg()
    manifest = [make(exe, ratio, w, h) for ratio, (w, h) in SIZES.items()]
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for entry in manifest:
        print(f"{entry['file']}: {entry['width']}x{entry['height']} {entry['duration_seconds']}s {entry['bytes']} B")


if __name__ == "__main__":
    main()
