"""The README's analysis example runs as written."""
from __future__ import annotations

import re
import runpy
from pathlib import Path

README = Path(__file__).resolve().parents[1] / 'README.md'


def test_readme_analysis_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    marker = text.index('<!-- example: analysis')
    code = re.search(r'```python\n(.*?)```', text[marker:], re.S).group(1)
    script = tmp_path / 'example.py'
    script.write_text(code)
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name='__main__')
    assert (tmp_path / 'probe_example.png').stat().st_size > 1000
