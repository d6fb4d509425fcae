"""examples/: one routes file per vendor plus the multi-vendor chains, each passing ``tarash-router check``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from router.registry import known_providers
from router.routes import load

EXAMPLES = Path(__file__).parents[1] / "examples"
SCRIPT = Path(sys.executable).parent / "tarash-router"


def test_every_example_passes_check() -> None:
    files = sorted(EXAMPLES.glob("*.toml"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARASH_ROUTER_")}
    runs = {path.name: subprocess.Popen([str(SCRIPT), "check", str(path)], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env) for path in files}
    for name, proc in runs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, (name, err)
        assert "OK" in out and "problem" not in err, (name, out, err)


def test_one_file_per_vendor_and_the_named_chains() -> None:
    vendors = set(known_providers()) - {"mock"}
    assert {path.stem for path in EXAMPLES.glob("*.toml")} >= vendors | {"video-chain", "image-chain"}
    for vendor in vendors:
        snapshot = load(EXAMPLES / f"{vendor}.toml")
        assert {c.provider for r in snapshot.routes.values() for c in r.chain} == {vendor}
    video = load(EXAMPLES / "video-chain.toml").routes["video"]
    assert [c.provider for c in video.chain] == ["fal", "google", "runway"]
    assert all("veo" in c.model for c in video.chain[:2])
    image = load(EXAMPLES / "image-chain.toml").routes["image"]
    assert [c.provider for c in image.chain] == ["openai", "fal", "stability"]
    assert "flux" in image.chain[1].model


def test_no_example_depends_on_sora() -> None:
    for path in EXAMPLES.glob("*.toml"):
        for route in load(path).routes.values():
            for config in route.chain:
                assert not (route.kind == "video" and config.provider in ("openai", "azure-openai")), path.name
                assert "sora" not in config.model.lower(), path.name
    assert "OpenAI ended its Sora video API" in (EXAMPLES / "README.md").read_text()
