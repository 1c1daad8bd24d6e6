"""The documentation site: built by MkDocs in strict mode (a broken link, a missing page or a
failing reference fails), every code block a page marks runnable executed on a tiny setting, and
the home page and a guide opened in headless Chromium."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARK = re.compile(r"<!-- runnable(?::(?P<extra>[^>]*))? -->\s*\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]'; make test installs it)")
    out = tmp_path_factory.mktemp("site")
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return out


def test_the_site_builds_in_strict_mode_with_every_page_and_the_command_reference(site):
    for page in ("index.html", "getting-started.html", "extending.html", "guide/lottery.html", "guide/criteria.html",
                 "guide/store.html", "reference/commands.html", "reference/api.html", "testbed.html", "criteria.html"):
        assert (site / page).exists(), page
    commands = (site / "reference" / "commands.html").read_text()
    for name in ("rewind train", "rewind lottery", "rewind prune-at", "rewind masks", "rewind verify"):
        assert name in commands
    assert "register_model" in (site / "reference" / "api.html").read_text()
    assert not list(site.rglob("*.png")) or not any(p.with_suffix(".svg").exists() for p in site.rglob("*.png"))


def _blocks():
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        for i, m in enumerate(MARK.finditer(page.read_text())):
            out.append(pytest.param(page, m.group("lang"), m.group("code"), (m.group("extra") or "").strip(),
                                    id=f"{page.relative_to(DOCS)}-{i}"))
    return out


def _with_extra(line: str, extra: list[str]) -> list[str]:
    """A `rewind ...` line's argv with the tiny setting's flags its command accepts appended."""
    from rewind.cli import build_parser

    argv = shlex.split(line)[1:]
    cmd = argv[0]
    sub = build_parser(only=cmd)._subparsers._group_actions[0].choices[cmd]
    known = {s for a in sub._actions for s in a.option_strings}
    added = []
    for flag, value in zip(extra[0::2], extra[1::2]):
        if flag in known:
            added += [flag, value]
    return argv + added


@pytest.mark.parametrize("page, lang, code, extra", _blocks())
def test_runnable_blocks_run(tmp_path, page, lang, code, extra):
    env = {**os.environ, "REWIND_ROOT": str(tmp_path / "runs")}
    if lang == "python":
        (tmp_path / "snippet.py").write_text(code)
        p = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, env=env,
                           timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        return
    assert lang == "bash", lang
    for line in code.replace("\\\n", " ").splitlines():
        line = line.split(" > ")[0].split(" | ")[0].strip()
        if not line.startswith("rewind "):
            continue
        argv = _with_extra(line, shlex.split(extra))
        p = subprocess.run([sys.executable, "-m", "rewind", *argv], cwd=tmp_path, capture_output=True, text=True,
                           env=env, timeout=600)
        assert p.returncode == 0, (line, p.stderr[-3000:])


def test_every_page_has_a_runnable_block_or_is_reference():
    """The getting-started page and every extension recipe run in this suite."""
    marked = {page.relative_to(DOCS).as_posix() for page, *_ in (b.values for b in _blocks())}
    assert {"getting-started.md", "extending.md"} <= marked
    assert sum(1 for b in _blocks() if b.values[0].name == "extending.md") >= 7   # one per extension point


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.parametrize("page", ["index.html", "guide/criteria.html"])
def test_pages_in_a_browser(site, page):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium on this machine and none could be installed (apt-get install chromium; .ci/run "
                    "tries)")
    errors, requests = [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        tab = browser.new_page(viewport={"width": 1200, "height": 900})
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.on("request", lambda r: requests.append(r.url))
        tab.goto((site / page).as_uri(), wait_until="load")
        images = tab.eval_on_selector_all("img", "els => els.map(e => [e.src, e.complete && e.naturalWidth > 0])")
        links = tab.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        browser.close()
    assert errors == [], errors
    assert all(ok for _, ok in images), images
    if page == "index.html":
        assert images, "the home page shows a figure"
    assert [u for u in requests if not u.startswith("file:")] == []   # nothing from the network
    for url in links:   # internal links resolve to files of the site
        if url.startswith("file:"):
            target = Path(url.removeprefix("file://").split("#")[0])
            assert target.exists(), url
