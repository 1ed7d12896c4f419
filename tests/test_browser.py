"""The offline HTML pages in a real browser: figures visible, verdict readable, nothing fetched.

Opt-in (``pytest -m browser``): it needs Chromium (Debian: ``apt-get install -y chromium``) and runs
notebook 01 on the smoke profile (about a minute). Chromium runs headless with every host name
unresolvable (``--host-resolver-rules``), so a page that needed a CDN would lose what it fetches.
The test counts the images the browser decoded and looks for the verdict in the rendered text, and
it leaves a screenshot of the reader page for a human to look at: in ``$DERAIN_SCREENSHOTS`` when
that is set, else in the test's temporary folder (the path is printed).
"""
from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from derain_utils.book import monograph
from derain_utils.book import runs as run_folders
from derain_utils.stats import verdict

pytestmark = pytest.mark.browser

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)

PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-images-decoded', String(ok));
});
</script>"""


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180)


def asked_for(markexpr: str | None) -> bool:
    """Whether ``-m`` selects the browser tests (``browser``, not ``not browser``)."""
    return bool(re.search(r"(?<!not )\bbrowser\b", markexpr or ""))


def test_asked_for_reads_the_marker_expression():
    assert asked_for("browser") and asked_for("slow or browser")
    assert not asked_for("not slow and not gpu and not browser") and not asked_for(None)


@pytest.fixture(scope="module")
def smoke_pages(request, tmp_path_factory) -> tuple[Path, Path, verdict.Verdict]:
    if CHROMIUM is None:
        # was: `pytest -m browser` passed with rc 0, every test skipped, when Chromium was missing
        message = "Chromium is not installed (Debian: apt-get install -y chromium)"
        if asked_for(request.config.option.markexpr):
            pytest.fail(f"the browser tests were asked for (-m browser) but {message}", pytrace=False)
        pytest.skip(message)
    runs = tmp_path_factory.mktemp("runs")
    code = monograph.main(["run", "--profile", "smoke", "--only", "01", "--runs-dir", str(runs), "--no-progress",
                           "--html", "--no-input"])
    assert code == 0
    folder = run_folders.latest_run("01_set_size", "smoke", runs)
    reader = folder / "01_set_size.reader.html"
    full = monograph.export_html(folder / "01_set_size.ipynb")
    return full, reader, verdict.read_verdict(folder)


@pytest.mark.parametrize("which", ["full", "reader"])
def test_offline_page_shows_its_figures_and_verdict(smoke_pages, which: str, tmp_path: Path) -> None:
    full, reader, v = smoke_pages
    page = full if which == "full" else reader
    probe = tmp_path / page.name
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    res = _chromium(tmp_path / "profile", "--dump-dom", probe.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    body = re.search(r"<body[^>]*>", res.stdout).group(0)
    total = int(re.search(r'data-images="(\d+)"', body).group(1))
    decoded = int(re.search(r'data-images-decoded="(\d+)"', body).group(1))
    assert total >= len(v.extra["figures"]) and decoded == total, body
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", res.stdout)).split())
    assert ("Reproduced." in text) or ("Not reproduced" in text)
    assert " ".join(v.summary.split())[:60] in text
    assert ("use_style" in text) is (which == "full")  # the reader page holds no code


def test_screenshot_of_the_reader_page(smoke_pages, tmp_path: Path) -> None:
    _, reader, _ = smoke_pages
    out_dir = Path(os.environ.get("DERAIN_SCREENSHOTS") or tmp_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    shot = out_dir / "01_set_size.reader.png"
    res = _chromium(tmp_path / "profile", "--window-size=1280,7000", "--hide-scrollbars", f"--screenshot={shot}",
                    reader.as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    print(f"screenshot: {shot}")
    with Image.open(shot) as im:
        px = np.asarray(im.convert("RGB"), dtype=np.float32)
    colourful = (px.max(axis=2) - px.min(axis=2)) > 60  # figure lines and images; the page itself is grey
    assert colourful.mean() > 0.005, "no figure is visible in the screenshot"
