"""What the repository tells a reader who arrives on GitHub, and how the website is published:
the Pages workflow builds the site exactly as the tests do, the README links to the published site
and shows chapter 5's animation, and the licence, citation, contributing and changelog files agree."""
from __future__ import annotations

import importlib.util
import re
import shlex

import yaml
from PIL import Image

from .conftest import BUILD_OPTIONS, ROOT, config, pages_url, repository_url

WORKFLOW = ROOT / ".github" / "workflows" / "pages.yml"
README = (ROOT / "README.md").read_text()
MAX_GIF_BYTES = 3 * 2**20


def _version() -> str:
    """The package's version in pyproject.toml (read without tomllib, which Python 3.10 lacks)."""
    return re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def _workflow() -> dict:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as True
    return workflow


def _steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def test_pages_url_is_derived_from_the_repository():
    assert repository_url() == "https://github.com/ddpm-lessons/ddpm-lessons"
    assert pages_url() == "https://ddpm-lessons.github.io/ddpm-lessons/"


def test_workflow_publishes_from_main_with_the_tests_build_command():
    workflow = _workflow()
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    commands = [shlex.split(step["run"]) for step in _steps(build) if "jupyter-book build" in step.get("run", "")]
    assert commands == [["jupyter-book", "build", ".", *BUILD_OPTIONS]], \
        f"the workflow must build as tests/book/conftest.py does ({BUILD_OPTIONS}); it runs {commands}"
    installs = " ".join(step.get("run", "") for step in _steps(build))
    assert "pip install -r requirements.txt" in installs, "the workflow must install what the tests install"
    uploads = [step for step in _steps(build) if step.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert len(uploads) == 1 and uploads[0]["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert [step["uses"].split("@")[0] for step in _steps(deploy)] == ["actions/deploy-pages"]


def test_readme_links_to_the_published_site_and_says_how_to_work():
    assert pages_url() in README.split("## ", 1)[0], "the README's opening must link to the published site"
    assert "jupyter lab book/" in README
    assert f"{repository_url()}/issues" in README, "the README must say where to report an error"
    for name in ("LICENSE", "CONTRIBUTING.md", "CHANGELOG.md", "CITATION.cff", "tools/run_chapter.py"):
        assert name in README and (ROOT / name).is_file(), f"the README must mention {name}, which must exist"


def _export_gif_tool():
    spec = importlib.util.spec_from_file_location("export_gif", ROOT / "tools" / "export_gif.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_opens_with_chapter_5s_animation():
    """The README's first image is an animated GIF of reasonable size, byte for byte one that chapter
    5 stores (so it cannot show an older run: tools/export_gif.py refreshes it)."""
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", README)
    assert images and README.index(images[0]) < README.index("## "), "the README must open with an image"
    path = ROOT / images[0]
    assert path.suffix == ".gif" and path.is_file(), f"the README shows {images[0]}, which is not a GIF file here"
    data = path.read_bytes()
    assert data[:6] in {b"GIF87a", b"GIF89a"} and len(data) <= MAX_GIF_BYTES, \
        f"{images[0]}: {len(data) / 2**20:.1f} MB, at most {MAX_GIF_BYTES / 2**20:.0f} MB"
    with Image.open(path) as gif:
        assert gif.n_frames > 1 and 200 <= gif.width <= 1200, f"{images[0]}: {gif.n_frames} frames, {gif.size} px"
    chapter5 = ROOT / "book" / "05_unet_fashion_mnist.ipynb"
    assert data in _export_gif_tool().stored_gifs(chapter5), (
        f"{images[0]} is not one of the GIFs that {chapter5.name} stores: run "
        f"python tools/export_gif.py book/{chapter5.name} {images[0]}")


def test_licences_are_stated_in_the_licence_file_the_readme_and_the_footer():
    licence = (ROOT / "LICENSE").read_text()
    assert "MIT License" in licence and "Permission is hereby granted, free of charge" in licence
    assert "CC BY 4.0" in licence and "creativecommons.org/licenses/by/4.0" in licence
    assert "MIT" in README and "CC BY 4.0" in README
    footer = config()["html"]["extra_footer"]
    assert "MIT" in footer and "CC BY 4.0" in footer


def test_citation_file_agrees_with_the_repository():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    version = _version()
    assert citation["cff-version"] == "1.2.0" and citation["title"] and citation["authors"]
    assert citation["repository-code"] == repository_url() and citation["url"] == pages_url()
    assert citation["version"] == version and set(citation["license"]) == {"MIT", "CC-BY-4.0"}


def test_changelog_has_the_first_release_and_contributing_names_the_runner():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    version = _version()
    assert re.search(rf"^## {re.escape(version)}\b", changelog, re.M), f"CHANGELOG.md has no section for {version}"
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    assert "python tools/run_chapter.py book/" in contributing and "## What the tests check" in contributing
