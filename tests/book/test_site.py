"""The website in a real browser: every page of the built book, opened in headless Chromium.

The book is built once (the ``built_site`` fixture, ``-W``), served from a local port, and one
Chromium (Debian's package, driven by Playwright; never a downloaded browser) visits every page,
once in a desktop window (1280 px wide) and once in a phone's (390 px): every test runs at both
widths. Requests that leave the site are blocked, so the math must render from the MathJax bundled
into the build (``sphinx-mathjax-offline`` in _config.yml). What each test checks is in its
docstring; the layout rules (figures, overflow, equations) hold with book/_static/book.css.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import sys
import tempfile
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
WIDTHS = (1280, 390)          # a desktop window and a phone (an iPhone's 390 CSS px)
MAX_OUTPUT_LINES = 40         # a longer printed output is a log, not something a reader reads
MAX_PROGRESS_LINES = 6        # "a handful" of progress-bar lines on one page (one per bar at most)
MIN_FIGURE_SCALE = 0.7        # a figure shown smaller than 70% of its pixels has illegible text
# tqdm's bar: "training: 100%|██████████| 20000/20000 [01:52<00:00, ...]" (n and total may read 1.2k)
PROGRESS_BAR = re.compile(r"\|[^|\n]*\|\s*(?P<n>\d+(?:\.\d+)?[kMGT]?)/(?P<total>\d+(?:\.\d+)?[kMGT]?)\s*\[")
# the rule under a Markdown table's header, left as text: "|---|---|" ("|—|—|" once typeset)
RAW_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?(?:-{3,}|[—–]{1,3}):?[ \t]*(?:\|[ \t]*:?(?:-{3,}|[—–]{1,3}):?[ \t]*)+\|?[ \t]*$", re.M)
# an object's repr left as a cell's output; a checker's verdict on an answer nobody has written yet
STRAY_REPR = re.compile(r"^\s*(?:array\(\[\s*)?<(?:Axes|Figure|matplotlib\.[\w.]+)\b|<[\w.]+ object at 0x[0-9a-f]+>", re.M)
PASSED_CHECK = re.compile(r"✓ [^\n:]{1,60}: correct")  # the harness prints "✓ {checker}: correct. Well done!"
# folders of the machine that ran a notebook: homes, temporary and working folders, Colab's, Python's
MACHINE_PATH = re.compile(r"(?<![\w.~/-])(?:/(?:home|Users|root|tmp|var/folders|private/var|work|content|mnt|scratch|"
                          r"srv|opt)(?=/|\b)[^\s'\"]*|[A-Za-z]:\\Users\\[^\s'\"]*)|[^\s'\"]*/(?:site|dist)-packages/[^\s'\"]*")


def stored_outputs(name: str) -> list[dict]:
    """The outputs stored in the notebook behind a page (none for a Markdown page)."""
    path = ROOT / f"{name}.ipynb"
    if not path.exists():
        return []
    cells = json.loads(path.read_text())["cells"]
    return [output for cell in cells if cell["cell_type"] == "code" for output in cell.get("outputs", [])]


def notebook_gif_count(name: str) -> int:
    """How many GIF outputs the notebook behind a page stores (0 for a Markdown page)."""
    return sum("image/gif" in output.get("data", {}) for output in stored_outputs(name))


def notebook_table_count(name: str) -> int:
    """How many tables the notebook's displayed Markdown holds (``display(Markdown(...))``)."""
    return sum(len(RAW_TABLE_RULE.findall("".join(output.get("data", {}).get("text/markdown", ""))))
               for output in stored_outputs(name))


def machine_folders() -> list[str]:
    """This machine's own folders (home, temporary, working, the checkout, the data and cache roots),
    which no stored output may print; the notebooks may have run here (or on Colab: MACHINE_PATH)."""
    from ddpm_lessons import settings

    folders = {Path.home(), Path(tempfile.gettempdir()), Path.cwd(), ROOT, ROOT.parent,
               settings.data_root(), settings.cache_dir()}
    if os.environ.get("DDPM_LESSONS_DATA"):
        folders.add(Path(os.environ["DDPM_LESSONS_DATA"]).resolve())
    return sorted({str(folder) for folder in folders if len(folder.parts) >= 2})


COLUMN_GAP = re.compile(r"(?<=\S) {2,}(?=\S)")


def _aligned_runs(lines: list[str], columns, shared: int) -> list[str]:
    """The first line of each run of 3 or more consecutive lines that share at least ``shared``
    column positions (``columns(line)`` gives a line's positions)."""
    found, run, common = [], [], set()
    for line in lines + [""]:
        positions = columns(line)
        if len(positions) >= shared and (not run or len(common & positions) >= shared):
            common = common & positions if run else positions
            run.append(line)
            continue
        if len(run) >= 3:
            found.append(run[0].strip())
        run, common = ([line], positions) if len(positions) >= shared else ([], set())
    return found


def text_tables(text: str) -> list[str]:
    """Tables printed as text: 3 or more consecutive lines with " | " at the same column, or with
    at least two columns aligned by runs of spaces ("linear    0.99990    4.04e-05")."""
    lines = text.splitlines()
    pipes = _aligned_runs(lines, lambda line: {m.start() for m in re.finditer(r" \| ", line)}, 1)
    spaces = _aligned_runs(lines, lambda line: {m.end() for m in COLUMN_GAP.finditer(line)}, 2)
    return pipes + [table for table in spaces if table not in pipes]


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
    width: int = 0
    outputs: list[dict] = field(default_factory=list)       # text outputs: {"kind", "text"}
    output_text: str = ""                                    # everything the cells' outputs show
    reading_text: str = ""                                   # the page's text outside code
    output_tables: int = 0                                   # <table>s rendered in cell outputs
    figures: list[dict] = field(default_factory=list)       # images: natural and shown width
    overflow: list[str] = field(default_factory=list)       # elements wider than the viewport
    page_width: int = 0                                      # the page's scroll width
    wide_equations: list[dict] = field(default_factory=list)
    equations: int = 0
    toggle: dict = field(default_factory=dict)              # what the ☰ button did


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


_LAYOUT_JS = """async () => {
  await document.fonts.ready;
  const main = document.querySelector('main') || document.body;
  const viewport = document.documentElement.clientWidth;
  const outputs = Array.from(main.querySelectorAll(
      '.cell_output .output.stream, .cell_output .output.stderr, .cell_output .output.text_plain, .cell_output .output.traceback'),
    el => ({kind: (el.className.match(/\\b(stream|stderr|text_plain|traceback)\\b/) || ['', '?'])[1], text: el.textContent}));
  const outputText = Array.from(main.querySelectorAll('.cell_output'), el => el.textContent).join('\\n');
  // the text a reader reads: no cell input, no code block or listing, no inline code, no math
  const reading = main.cloneNode(true);
  reading.querySelectorAll('.cell_input, div[class*="highlight-"]:not(.highlight-myst-ansi), code, script, style, mjx-container')
    .forEach(el => el.remove());
  const visible = el => el.checkVisibility({opacityProperty: true, visibilityProperty: true});
  const figures = Array.from(main.querySelectorAll('img'))
    .filter(img => img.naturalWidth >= 50 && img.getBoundingClientRect().width > 0 && visible(img))
    .map(img => ({src: (img.getAttribute('src') || '').replace(/^data:image\\/(\\w+);base64,.*/, 'an inline $1').slice(-50),
                  natural: Number(img.dataset.drawnWidth) || parseFloat(img.getAttribute('width')) || img.naturalWidth,
                  shown: Math.round(img.getBoundingClientRect().width * 10) / 10}));
  // elements wider than the viewport, unless inside a box that scrolls sideways (code, tables, math);
  // MathJax's copy of each formula for screen readers is clipped to nothing, so it does not count
  const scrolls = el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
  const inScroller = el => { for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) { if (scrolls(a)) return true; } return false; };
  const wide = new Set(Array.from(document.body.querySelectorAll('*')).filter(el => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.right > viewport + 1 && visible(el) && !el.closest('mjx-assistive-mml') && !inScroller(el);
  }));
  const describe = el => `<${el.tagName.toLowerCase()} class="${String(el.className).slice(0, 50)}"> ` +
    `"${(el.textContent || '').trim().slice(0, 40)}" reaches ${Math.round(el.getBoundingClientRect().right)} px`;
  const overflow = Array.from(wide).filter(el => !wide.has(el.parentElement)).slice(0, 8).map(describe);
  const equations = Array.from(main.querySelectorAll('mjx-container[display="true"]'));
  const tex = c => { try { return MathJax.startup.document.getMathItemsWithin(c)[0].math; } catch (e) { return c.textContent; } };
  const wideEquations = equations.map(c => ({tex: tex(c).trim().replace(/\\s+/g, ' ').slice(0, 70), width: c.scrollWidth,
                                             column: Math.min(c.clientWidth, c.parentElement.clientWidth)}))
    .filter(e => e.width > e.column + 1);
  return {outputs, outputText, reading: reading.textContent, outputTables: main.querySelectorAll('.cell_output table').length,
          figures, overflow, pageWidth: document.documentElement.scrollWidth, equations: equations.length, wideEquations};
}"""


def _check_toggle(page) -> dict:
    """Click the visible ☰ button: on a phone the chapter list must appear; on a desktop, where it is
    shown, it must hide and come back on a second click. Leaves the page as it was."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    buttons = [button for button in page.locator(".primary-toggle").all() if button.is_visible()]
    if not buttons:
        return {"button": False}
    chapter = page.locator("nav.bd-docs-nav li.toctree-l1 a.reference.internal").first

    def becomes(state: str) -> bool:
        try:
            chapter.wait_for(state=state, timeout=5000)
            return True
        except PlaywrightTimeout:
            return False

    result = {"button": True, "shown_before": chapter.is_visible()}
    buttons[0].click()
    if result["shown_before"]:  # a desktop: the click hides the list, a second one shows it again
        result["hides"] = becomes("hidden")
        buttons[0].click()
        result["opens"] = becomes("visible")
    else:  # a phone: the click opens the list (a dialog); Escape closes it
        result["opens"] = becomes("visible")
        page.keyboard.press("Escape")
        result["closes"] = becomes("hidden")
        page.evaluate("() => document.querySelectorAll('dialog[open]').forEach(d => d.close())")
    return result


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
    layout = page.evaluate(_LAYOUT_JS)
    report.outputs, report.output_text, report.reading_text = layout["outputs"], layout["outputText"], layout["reading"]
    report.output_tables, report.figures, report.overflow = layout["outputTables"], layout["figures"], layout["overflow"]
    report.page_width, report.equations, report.wide_equations = layout["pageWidth"], layout["equations"], layout["wideEquations"]

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

    report.toggle = _check_toggle(page)


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


@pytest.fixture(scope="module", params=WIDTHS, ids=lambda width: f"{width}px")
def browser_visit(request, built_site, served_site):
    """One headless Chromium visits every page in a window ``request.param`` px wide (each test
    runs at every width of WIDTHS); returns {page path: Page}, the width and the time it took."""
    width = request.param
    if not CHROMIUM.exists():
        pytest.skip(INSTALL_HINT)
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is missing: pip install -r requirements.txt")

    started = time.perf_counter()
    reports: dict[str, Page] = {}
    current: list[Page] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900 if width > 600 else 844})

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
                report = Page(name=path, url=served_site + path, width=width)
                current.append(report)
                page_started = time.perf_counter()
                _visit(page, report, built_site)
                report.seconds = time.perf_counter() - page_started
                reports[path] = report

            # the site's front door redirects to the first page of the book
            report = Page(name="index.html", url=served_site + "index.html", width=width)
            current.append(report)
            page.goto(report.url)
            page.wait_for_url(f"**/{toc_files()[0]}.html", timeout=5000)
            report.status = 200
            reports["index.html"] = report
        finally:
            browser.close()
    seconds = time.perf_counter() - started
    print(f"\nbrowser test at {width} px: {len(reports)} pages in {seconds:.1f} s "
          f"({sum(len(r.gifs) for r in reports.values())} GIFs, "
          f"{sum(len(r.solutions) for r in reports.values())} solutions, "
          f"{sum(r.math_elements for r in reports.values())} math elements); slowest: "
          + ", ".join(f"{r.name} {r.seconds:.1f} s" for r in sorted(reports.values(), key=lambda r: -r.seconds)[:3]))
    return {"pages": reports, "seconds": seconds, "width": width}


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


# What makes a page read like a book, at both widths --------------------------------------------------
def _report(problems: list[str], what: str) -> None:
    """Fail with every problem found (the first 25), so that one run lists all pages to fix."""
    assert not problems, f"{len(problems)} {what}:\n  " + "\n  ".join(problems[:25]) + \
        ("\n  ..." if len(problems) > 25 else "")


def _lines(text: str) -> list[str]:
    return text.rstrip("\n").split("\n") if text.strip() else []


def test_no_output_block_longer_than_40_lines(browser_visit):
    """A printed output of more than 40 lines is a log, not something a reader reads: print less, or
    a summary (code listings are not outputs: show them with dl.utils.show_source)."""
    problems = [f"{page.name}: a {output['kind']} output of {len(_lines(output['text']))} lines, starting "
                f"{_lines(output['text'])[0][:60]!r}"
                for page in _pages(browser_visit) for output in page.outputs
                if len(_lines(output["text"])) > MAX_OUTPUT_LINES]
    _report(problems, f"output blocks longer than {MAX_OUTPUT_LINES} lines (regenerate with tools/run_chapter.py)")


def test_progress_bars_show_their_final_line_with_a_true_total(browser_visit):
    """At most a handful of progress-bar lines on a page (a bar keeps its final line:
    tools/run_chapter.py), and each shows a total that was reached ("603/603", not "603/100000")."""
    problems = []
    for page in _pages(browser_visit):
        bars = [(line, match) for output in page.outputs for line in _lines(output["text"])
                for match in [PROGRESS_BAR.search(line)] if match]
        if len(bars) > MAX_PROGRESS_LINES:
            problems.append(f"{page.name}: {len(bars)} progress-bar lines (at most {MAX_PROGRESS_LINES}), e.g. "
                            f"{bars[0][0].strip()[:70]!r}")
        problems += [f"{page.name}: a bar stopped at {match['n']} of a total of {match['total']}: "
                     f"{line.strip()[:80]!r}" for line, match in bars if match["n"] != match["total"]][:3]
    _report(problems, "pages with progress bars that are not their final, true line")


def test_tables_are_rendered_as_tables(browser_visit):
    """No Markdown table left as text ("|---|"), no table printed as aligned text ("a | b" lines, or
    columns aligned with spaces), and every table that a notebook displays (display(Markdown(...)))
    is a <table> on its page."""
    problems = []
    for page in _pages(browser_visit):
        problems += [f"{page.name}: raw Markdown table rule {rule.strip()!r}"
                     for rule in RAW_TABLE_RULE.findall(page.reading_text)][:3]
        problems += [f"{page.name}: a table printed as text, starting {table[:70]!r}: display it as a Markdown table"
                     for output in page.outputs if output["kind"] == "stream" for table in text_tables(output["text"])][:3]
        expected = notebook_table_count(page.name.removesuffix(".html"))
        if page.output_tables < expected:
            problems.append(f"{page.name}: the notebook displays {expected} Markdown tables, the page renders "
                            f"{page.output_tables} as tables")
    _report(problems, "tables not rendered as tables")


def test_outputs_print_no_path_of_the_machine(browser_visit):
    """Outputs say what a reader needs (the dataset, its size, the device), not where the files of
    the machine that ran the notebook are: no home, temporary, working, data or cache folder."""
    folders = machine_folders()
    problems = []
    for page in _pages(browser_visit):
        found = set(MACHINE_PATH.findall(page.output_text))
        found |= {folder for folder in folders if folder in page.output_text}
        problems += [f"{page.name}: {path}" for path in sorted(found)]
    _report(problems, "machine paths printed in outputs")


def test_figures_are_shown_at_70_percent_of_their_size_or_more(browser_visit):
    """A figure shrunk below 70% of its pixels has illegible text (6 px ticks): draw figures for the
    column (dl.viz.use_book_style(): 520 px), split wide ones into rows."""
    problems = [f"{page.name}: {figure['src']} is {figure['natural']} px wide, shown at {figure['shown']:.0f} px "
                f"({figure['shown'] / figure['natural']:.0%})"
                for page in _pages(browser_visit) for figure in page.figures
                if figure["shown"] < MIN_FIGURE_SCALE * figure["natural"]]
    _report(problems, f"figures shown below {MIN_FIGURE_SCALE:.0%} of their width at {browser_visit['width']} px")


def test_nothing_is_wider_than_the_screen(browser_visit):
    """The page never scrolls sideways: no element reaches past the viewport, except inside a box that
    scrolls on its own (code, a wide table, an equation)."""
    width = browser_visit["width"]
    problems = []
    for page in _pages(browser_visit):
        if page.page_width > width:
            problems.append(f"{page.name}: the page is {page.page_width} px wide in a {width} px window")
        problems += [f"{page.name}: {element}" for element in page.overflow]
    _report(problems, f"elements wider than the {width} px viewport")


def test_display_equations_fit_the_column(browser_visit):
    """No display equation is wider than the text column: break long ones over lines (aligned, split)."""
    pages = _pages(browser_visit)
    assert sum(page.equations for page in pages) > 0, "no display equation found anywhere in the book"
    problems = [f"{page.name}: {equation['width']} px in a {equation['column']} px column: {equation['tex']!r}"
                for page in pages for equation in page.wide_equations]
    _report(problems, f"display equations wider than the column at {browser_visit['width']} px")


def test_menu_button_opens_the_chapter_list(browser_visit, built_site):
    """The ☰ button of every page opens the chapter list on a phone (and closes it again), and hides
    and shows it on a desktop."""
    visited = [page for page in _pages(browser_visit) if page.toggle]
    assert {f"{name}.html" for name in toc_files() if (built_site / f"{name}.html").exists()} <= \
        {page.name for page in visited}, "some pages of the book were not checked"
    problems = []
    for page in visited:
        toggle = page.toggle
        if not toggle["button"]:
            problems.append(f"{page.name}: no visible ☰ button")
        elif toggle["shown_before"]:
            if not (toggle["hides"] and toggle["opens"]):
                problems.append(f"{page.name}: the ☰ button does not hide and show the chapter list ({toggle})")
        elif not toggle["opens"]:
            problems.append(f"{page.name}: the ☰ button does not open the chapter list")
        elif not toggle["closes"]:
            problems.append(f"{page.name}: the chapter list does not close (Escape)")
    _report(problems, f"pages whose ☰ button fails at {browser_visit['width']} px")



def test_no_stray_outputs_and_no_checker_passing_before_the_reader_answers(browser_visit):
    """No object repr left above a figure ("array([<Axes: …>], dtype=object)": end the cell with
    plt.show()), and no "✓ …: correct" on the page: an exercise cell shows what the reader will
    see (a stub: "nothing to check yet"); the module's own answer is checked in a hidden cell."""
    problems = []
    for page in _pages(browser_visit):
        problems += [f"{page.name}: stray output {match.group(0).strip()!r}"
                     for output in page.outputs for match in STRAY_REPR.finditer(output["text"])][:3]
        problems += [f"{page.name}: {match.group(0)!r} before the reader has answered"
                     for match in PASSED_CHECK.finditer(page.output_text)][:3]
    _report(problems, "stray outputs or checkers run on the module's answer")
