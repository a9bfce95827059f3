"""The website in a real browser: every page of the built book, opened in headless Chromium.

The book is built once (the ``built_site`` fixture, ``-W``), served from a local port, and one
Chromium (Debian's package, driven by Playwright; never a downloaded browser) visits every page.
Requests that leave the site are blocked, so the math must render from the MathJax bundled into the
build (``sphinx-mathjax-offline`` in _config.yml). What each test checks is in its docstring.
"""
from __future__ import annotations

import functools
import http.server
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import pytest

from .conftest import ROOT, colab_link, toc_files

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL_HINT = ("Debian's chromium is not installed: run `apt-get update && apt-get install -y chromium` "
                "(.ci/run does it). Playwright drives it at /usr/bin/chromium; never `playwright install`.")
GIF_WATCH_SECONDS = 6.0     # the longest we watch one GIF for a changed frame
# Upstream, not ours: sphinx-thebe (always loaded by jupyter-book 1.x) writes its config script twice
# into every page, so the second `const` declaration throws; thebe itself is off in this book.
KNOWN_SCRIPT_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)
RAW_TEX = re.compile(r"\$\$|\\begin\{|\\end\{|\\\(|\\\)|\\\[|\\\]|\\[A-Za-z]+\{|\$[^$\s][^$\n]{0,80}\$")


def notebook_gif_count(name: str) -> int:
    """How many GIF outputs the notebook behind a page stores (0 for a Markdown page)."""
    path = ROOT / f"{name}.ipynb"
    if not path.exists():
        return 0
    cells = json.loads(path.read_text())["cells"]
    return sum("image/gif" in output.get("data", {})
               for cell in cells if cell["cell_type"] == "code" for output in cell.get("outputs", []))


@dataclass
class Page:
    """What the browser saw on one page."""
    name: str
    url: str
    status: int | None = None
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    script_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    links: set[str] = field(default_factory=set)
    math_elements: int = 0
    math_unrendered: int = 0
    math_errors: list[str] = field(default_factory=list)
    raw_tex: list[str] = field(default_factory=list)
    mathjax_src: str | None = None
    gifs: list[dict] = field(default_factory=list)
    solutions: list[dict] = field(default_factory=list)
    colab_links: list[str] = field(default_factory=list)
    colab_link_visible_after_click: bool = False
    text: str = ""
    seconds: float = 0.0


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # the browser drops connections it no longer needs (a page left mid-download): not an error
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def served_site(built_site):
    """The built site on a free localhost port, served by a thread for this module's tests."""
    handler = functools.partial(_QuietHandler, directory=str(built_site))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def site_pages(built_site: Path) -> list[str]:
    """Every page of the site (path relative to the html folder), the book's documents first."""
    documents = [f"{name}.html" for name in toc_files() if (built_site / f"{name}.html").exists()]
    others = sorted(str(p.relative_to(built_site)) for p in built_site.rglob("*.html")
                    if not p.relative_to(built_site).parts[0].startswith("_") and p.name != "index.html")
    return documents + [page for page in others if page not in documents]


# JavaScript run in each page -----------------------------------------------------------------------
_IMAGES_JS = """async () => {
  const broken = [];
  await Promise.all(Array.from(document.images, async img => {
    img.loading = 'eager';
    try { await img.decode(); } catch (e) { broken.push(img.currentSrc || img.src || img.outerHTML); }
    if (img.complete && img.naturalWidth === 0 && !broken.includes(img.src)) broken.push(img.src);
  }));
  return broken;
}"""

_MATH_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const maths = Array.from(document.querySelectorAll('.math'));
  const skip = 'pre, code, script, style, textarea, mjx-container, .highlight';
  const texts = [];
  const walker = document.createTreeWalker(document.querySelector('main') || document.body,
                                           NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.parentElement.closest(skip)) texts.push(node.textContent);
  }
  const script = document.querySelector('script[src*="mathjax" i], script[src*="tex-chtml"]');
  return {
    count: maths.length,
    unrendered: maths.filter(m => !m.querySelector('mjx-container')).length,
    errors: Array.from(document.querySelectorAll('mjx-merror'), e => e.getAttribute('data-mjx-error') || e.textContent),
    text: texts.join(' '),
    src: script ? script.src : null,
  };
}"""


def _visit(page, report: Page, built_site: Path) -> None:
    """Load one page and record what a reader meets on it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    response = page.goto(report.url, wait_until="load")
    report.status = response.status if response else None
    report.broken_images = page.evaluate(_IMAGES_JS)
    report.links = set(page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)"))
    math = page.evaluate(_MATH_JS)
    report.math_elements, report.math_unrendered = math["count"], math["unrendered"]
    report.math_errors, report.mathjax_src = math["errors"], math["src"]
    report.raw_tex = sorted({m.group(0) for m in RAW_TEX.finditer(math["text"])})
    report.text = page.inner_text("main") if page.locator("main").count() else page.inner_text("body")

    for index, gif in enumerate(page.locator('img[src$=".gif"], img[src^="data:image/gif"]').all()):
        report.gifs.append(_watch_gif(page, gif, index, built_site))

    solutions = page.locator(".solution")
    for index in range(solutions.count()):
        solution = solutions.nth(index)
        content = solution.locator("section").first
        entry = {"title": solution.locator(".admonition-title").first.inner_text().strip(),
                 "dropdown": "dropdown" in (solution.get_attribute("class") or ""),
                 "hidden_before": not content.is_visible()}
        button = solution.locator("button.toggle-button")
        (button.first if button.count() else solution.locator(".admonition-title").first).click()
        try:
            content.wait_for(state="visible", timeout=3000)
        except PlaywrightTimeout:
            pass  # reported by the test as "did not open on click"
        entry["visible_after_click"] = content.is_visible()
        entry["text_after_click"] = content.inner_text().strip()[:80] if entry["visible_after_click"] else ""
        report.solutions.append(entry)

    colab = page.locator('a[href^="https://colab.research.google.com"]')
    report.colab_links = [colab.nth(i).get_attribute("href") for i in range(colab.count())]
    launch = page.locator(".dropdown-launch-buttons button")
    if report.colab_links and launch.count():
        launch.first.click()
        report.colab_link_visible_after_click = colab.first.is_visible()
        page.keyboard.press("Escape")


def _watch_gif(page, gif, index: int, built_site: Path) -> dict:
    """Screenshots of the GIF element, a few hundred ms apart, until one differs from the first."""
    from PIL import Image

    src = gif.get_attribute("src")
    frames = None
    if not src.startswith("data:"):
        file = built_site / unquote(urlparse(urljoin(page.url, src)).path).lstrip("/")
        if file.exists():
            frames = Image.open(file).n_frames
    gif.scroll_into_view_if_needed()
    first = gif.screenshot(animations="allow")
    started, changed = time.perf_counter(), False
    while time.perf_counter() - started < GIF_WATCH_SECONDS:
        page.wait_for_timeout(250)
        if gif.screenshot(animations="allow") != first:
            changed = True
            break
    return {"index": index, "src": src[:80], "frames": frames, "animates": changed,
            "seconds_to_change": round(time.perf_counter() - started, 2)}


@pytest.fixture(scope="module")
def browser_visit(built_site, served_site):
    """One headless Chromium visits every page; returns {page path: Page} and the time it took."""
    if not CHROMIUM.exists():
        pytest.skip(INSTALL_HINT)
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is missing: pip install -r requirements.txt")

    started = time.perf_counter()
    reports: dict[str, Page] = {}
    current: list[Page] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def route(request_route):
                url = request_route.request.url
                if url.startswith(served_site) or url.startswith("data:"):
                    request_route.continue_()
                else:  # the site must work offline: nothing outside it is fetched
                    current[-1].external_requests.append(url)
                    request_route.abort()

            page.route("**/*", route)
            page.on("requestfailed", lambda r: r.url.startswith(served_site)
                    and current[-1].failed_requests.append(f"{r.url} ({r.failure})"))
            page.on("response", lambda r: r.status >= 400
                    and current[-1].failed_requests.append(f"{r.url} (HTTP {r.status})"))
            page.on("pageerror", lambda error: str(error) in KNOWN_SCRIPT_ERRORS
                    or current[-1].script_errors.append(str(error)))

            for path in site_pages(built_site):
                report = Page(name=path, url=served_site + path)
                current.append(report)
                page_started = time.perf_counter()
                _visit(page, report, built_site)
                report.seconds = time.perf_counter() - page_started
                reports[path] = report

            # the site's front door redirects to the first page of the book
            report = Page(name="index.html", url=served_site + "index.html")
            current.append(report)
            page.goto(report.url)
            page.wait_for_url(f"**/{toc_files()[0]}.html", timeout=5000)
            report.status = 200
            reports["index.html"] = report
        finally:
            browser.close()
    seconds = time.perf_counter() - started
    print(f"\nbrowser test: {len(reports)} pages in {seconds:.1f} s "
          f"({sum(len(r.gifs) for r in reports.values())} GIFs, "
          f"{sum(len(r.solutions) for r in reports.values())} solutions, "
          f"{sum(r.math_elements for r in reports.values())} math elements); slowest: "
          + ", ".join(f"{r.name} {r.seconds:.1f} s" for r in sorted(reports.values(), key=lambda r: -r.seconds)[:3]))
    return {"pages": reports, "seconds": seconds}


# The checks --------------------------------------------------------------------------------------
def _pages(visit) -> list[Page]:
    return list(visit["pages"].values())


def test_every_page_loads_with_nothing_missing(browser_visit, built_site):
    """Every page answers 200 with no script error, no failed request and nothing fetched from outside."""
    pages = _pages(browser_visit)
    assert {f"{name}.html" for name in toc_files() if (built_site / f"{name}.html").exists()} <= \
        set(browser_visit["pages"]), "some pages of the book were not visited"
    for page in pages:
        assert page.status == 200, f"{page.name}: HTTP {page.status}"
        assert not page.script_errors, f"{page.name}: JavaScript error {page.script_errors[0]}"
        assert not page.failed_requests, f"{page.name}: failed to load {page.failed_requests}"
        assert not page.external_requests, \
            f"{page.name} fetches from outside the site (it must work offline): {page.external_requests[:3]}"


def test_no_broken_images(browser_visit):
    """Every <img> on every page decodes (outputs, logos, GIFs)."""
    for page in _pages(browser_visit):
        assert not page.broken_images, f"{page.name}: broken images {page.broken_images}"


def test_no_broken_links_inside_the_site(browser_visit, built_site, served_site):
    """Every link to a page of the site reaches a file, and its #anchor exists in that page."""
    ids: dict[Path, set[str]] = {}
    for page in _pages(browser_visit):
        for link in sorted(page.links):
            if not link.startswith(served_site):
                continue
            url, fragment = urldefrag(link)
            target = built_site / unquote(urlparse(url).path).lstrip("/")
            if target.is_dir():
                target = target / "index.html"
            assert target.is_file(), f"{page.name}: broken link to {link}"
            if fragment and target.suffix == ".html":
                if target not in ids:
                    ids[target] = set(re.findall(r'\b(?:id|name)="([^"]+)"', target.read_text()))
                assert unquote(fragment) in ids[target], f"{page.name}: link {link}: no #{fragment} in {target.name}"


def test_math_is_rendered_offline(browser_visit):
    """MathJax comes from the site itself and typesets every formula: no raw TeX is left in the text."""
    pages = _pages(browser_visit)
    assert sum(page.math_elements for page in pages) > 0, "no math found anywhere in the book"
    for page in pages:
        if page.math_elements:
            assert page.mathjax_src and "cdn" not in page.mathjax_src, \
                f"{page.name}: MathJax is not served by the site: {page.mathjax_src}"
        assert page.math_unrendered == 0, f"{page.name}: {page.math_unrendered} of {page.math_elements} formulas not typeset"
        assert not page.math_errors, f"{page.name}: TeX errors {page.math_errors[:3]}"
        assert not page.raw_tex, f"{page.name}: raw TeX left in the text: {page.raw_tex[:5]}"


def test_gifs_are_present_and_animate(browser_visit):
    """Each chapter shows as many GIFs as its notebook stores, and each one changes frames on screen."""
    for name in toc_files():
        expected = notebook_gif_count(name)
        page = browser_visit["pages"].get(f"{name}.html")
        if page is None or not expected:
            continue
        assert len(page.gifs) == expected, f"{page.name}: the notebook stores {expected} GIFs, the page shows {len(page.gifs)}"
        for gif in page.gifs:
            assert gif["frames"] is None or gif["frames"] > 1, f"{page.name}: GIF {gif['src']} has a single frame"
            assert gif["animates"], f"{page.name}: GIF {gif['src']} did not change in {GIF_WATCH_SECONDS} s"


def test_solutions_are_hidden_until_clicked(browser_visit):
    """Every exercise solution is a closed dropdown; one click opens it and shows its text."""
    solutions = [(page, s) for page in _pages(browser_visit) for s in page.solutions]
    assert solutions, "no exercise solution anywhere in the book"
    for page, solution in solutions:
        what = f"{page.name}: '{solution['title']}'"
        assert solution["dropdown"], f"{what} is not a dropdown: add ':class: dropdown' to the solution"
        assert solution["hidden_before"], f"{what} is visible before any click"
        assert solution["visible_after_click"] and solution["text_after_click"], f"{what} did not open on click"


def test_colab_launch_link_of_each_chapter(browser_visit):
    """Each notebook page's launch menu opens that very notebook on Colab, from the repository of
    _config.yml; the Colab install cell itself is hidden from the page."""
    notebooks = [name for name in toc_files() if (ROOT / f"{name}.ipynb").exists()]
    for name in notebooks:
        page = browser_visit["pages"].get(f"{name}.html")
        assert page is not None, f"no page for {name}.ipynb"
        expected = colab_link(f"{name}.ipynb")
        assert page.colab_links == [expected], f"{page.name}: Colab links {page.colab_links}, expected [{expected}]"
        assert page.colab_link_visible_after_click, f"{page.name}: the launch menu does not show the Colab link"
        assert "google.colab" not in page.text, f"{page.name}: the Colab install cell is visible (tag it remove-cell)"
