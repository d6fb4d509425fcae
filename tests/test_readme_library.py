"""The README's library snippet handles the response shape as it really is (run with the mock as the vendor)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"


def test_the_library_snippet_reads_the_response_as_documented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    text = README.read_text()
    snippet = re.search(r"## Library.*?```python\n(.*?)```", text, re.S)[1]  # type: ignore[index]
    # The vendors need keys and the network: the mock stands in for the chain, the rest runs as written.
    code, count = re.subn(r"config = router\.VideoGenerationConfig\(.*?\n\)[^\n]*\n",
                          'config = router.VideoGenerationConfig(provider="mock", model="mock-video")\n',
                          snippet, flags=re.S)
    assert count == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "fox.mp4").read_bytes()[4:8] == b"ftyp"
    assert "1 mock mock-video success None" in capsys.readouterr().out
