"""`stylelens serve` in a real browser: headless Debian Chromium driven by Playwright loads the page of the demo
network, moves the seed and a mixing control, and the images it shows equal what the snapshot's CLI commands write.

Needs /usr/bin/chromium (`apt-get install chromium`) and `pip install playwright` (never `playwright install`: the
system browser is used); `.ci/run` installs both. With STYLELENS_GALLERY=1 the screenshot also goes to
checkpoints/gallery/serve.png, the README's picture.
"""
from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO

CHROMIUM = Path('/usr/bin/chromium')
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']
SETTLED = 'window.explorer && window.explorer.settled() && document.getElementById("live").src !== ""'

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason='no /usr/bin/chromium: apt-get install chromium')
sync_api = pytest.importorskip('playwright.sync_api', reason='no Playwright: pip install playwright')
pytest.importorskip('fastapi', reason='the explorer needs FastAPI: pip install -e .[test]')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """`stylelens serve --network demo` on a free loopback port; its URL, once it answers."""
    port = free_port()
    script = Path(sys.executable).with_name('stylelens')
    process = subprocess.Popen([str(script), 'serve', '--network', 'demo', '--port', str(port), '--device', 'cpu',
                                '--outdir', str(tmp_path / 'out')], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})  # the browser needs a core
    url = f'http://127.0.0.1:{port}/'
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + 'api/networks', timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f'stylelens serve did not start: {process.communicate()[0]}')
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def shown(page, selector: str) -> np.ndarray:
    """The PNG an <img> shows, decoded."""
    data_url = page.get_attribute(selector, 'src')
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(',', 1)[1]))))


def settle(page) -> None:
    page.wait_for_timeout(100)   # input events are handled; the requests they sent are then awaited
    page.wait_for_function(SETTLED, timeout=30_000)
    assert page.is_hidden('#error'), page.inner_text('#error')


def snapshot_and_run(page, tmp_path: Path) -> Path:
    """Click Snapshot, run the commands.sh it wrote (the CLI), return the snapshot folder."""
    before = page.inner_text('#snapshot-out') if page.is_visible('#snapshot-out') else ''
    page.click('#snapshot')
    page.wait_for_function(f'document.getElementById("snapshot-out").textContent !== {before!r}', timeout=30_000)
    folder = Path(page.inner_text('#snapshot-out').split()[1].rstrip('/'))
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PATH': f'{Path(sys.executable).parent}:{os.environ["PATH"]}'}
    result = subprocess.run(['bash', str(folder / 'commands.sh')], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return folder


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def test_page_matches_the_cli(server, tmp_path):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={'width': 1280, 'height': 960})
            page.goto(server)
            settle(page)
            first = shown(page, '#live')

            page.fill('#seed', '5')
            settle(page)
            seeded = shown(page, '#live')
            assert not np.array_equal(seeded, first)
            folder = snapshot_and_run(page, tmp_path)
            assert close(seeded, np.asarray(Image.open(folder / 'cli/generate/seed0005.png')))

            page.check('#mix-on')
            page.fill('#mix-source', '12')
            page.check('#mix-layers input[value=b8]')
            page.select_option('#hook', 'synthesis.b16.conv1')
            settle(page)
            mixed = shown(page, '#live')
            assert not np.array_equal(mixed, seeded)
            assert page.is_visible('#grid') and page.is_visible('#act')
            folder = snapshot_and_run(page, tmp_path)
            assert close(mixed, np.asarray(Image.open(folder / 'cli/mix/mix.png')))
            assert close(shown(page, '#grid'), np.asarray(Image.open(folder / 'cli/grid/grid.png')))
            assert (folder / 'manifest.json').is_file() and (folder / 'cli/mix/manifest.json').is_file()

            page.screenshot(path=str(tmp_path / 'serve.png'))
            if os.environ.get('STYLELENS_GALLERY') == '1':
                shutil.copyfile(tmp_path / 'serve.png', REPO / 'checkpoints' / 'gallery' / 'serve.png')
        finally:
            browser.close()
