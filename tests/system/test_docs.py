"""The documentation: the site builds with `mkdocs build --strict` (a broken link, a missing anchor
or page, a docstring mkdocstrings cannot read: each a failure), the README stays a short front
page whose links to the docs land on files in the repository, and no page links outside it
except to public URLs."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"
# [text](target) and ![alt](target), target up to the first space or closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def links(path: Path) -> list[str]:
    """Every link target of a Markdown file, code blocks left out (their brackets are code)."""
    text = FENCE.sub("", path.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


def local(target: str) -> bool:
    return not re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("#")


def build(site: Path, config: Path = ROOT / "mkdocs.yml") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_site_builds_strict_with_the_generated_reference_pages(tmp_path):
    from raystudy import reference

    r = build(tmp_path / "site")
    assert r.returncode == 0, r.stdout + r.stderr
    # the generated pages are built from the code, and are not committed copies
    for page, text, words in (("configuration", reference.config_markdown(), ("held_out", "delta_m", "scale_up_wait_s")),
                              ("cli", reference.cli_markdown(), ("import-samples", "--dry-run", "--no-wait"))):
        assert not (ROOT / "docs" / "reference" / f"{page}.md").exists(), page
        html = (tmp_path / "site" / "reference" / page / "index.html").read_text()
        for word in words:
            assert word in text and word in html, (page, word)
    api = (tmp_path / "site" / "reference" / "analysis" / "index.html").read_text()
    for name in ("raystudy.analysis.transition_summary", "raystudy.analysis.summaries.summary",
                 "raystudy.analysis.phase.tau_mem"):
        assert f'id="{name}"' in api, name
    assert (tmp_path / "site" / "img" / "transition.png").stat().st_size > 10_000


def test_strict_build_fails_on_a_broken_link(tmp_path):
    """The build above is a check only if a broken link fails it: a copy of the docs with one."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    page = tmp_path / "docs" / "concepts.md"
    page.write_text(page.read_text() + "\nSee [nowhere](guides/no-such-page.md).\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text((ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {tmp_path / 'docs'}")
                      .replace("  - docs/hooks.py", f"  - {tmp_path / 'docs' / 'hooks.py'}"))
    r = build(tmp_path / "site", config)
    assert r.returncode != 0
    assert "no-such-page.md" in r.stdout + r.stderr


def test_readme_is_a_short_front_page():
    n = len(README.read_text().splitlines())
    assert n <= 150, f"README.md has {n} lines; move detail into docs/"


def test_readme_links_to_docs_pages_that_exist():
    docs = [t for t in links(README) if local(t)]
    assert any(t.startswith("docs/") for t in docs)
    missing = [t for t in docs if not (ROOT / t.split("#")[0]).is_file()]
    assert not missing, f"README.md links to files that are not in the repository: {missing}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_link_leaves_the_repository(path):
    bad = []
    for target in links(path):
        if "../shared" in target or target.startswith("/"):
            bad.append(target)
        elif local(target):
            resolved = (path.parent / target.split("#")[0]).resolve()
            if not resolved.is_relative_to(ROOT):
                bad.append(target)
    assert not bad, f"{path.relative_to(ROOT)} links outside the repository: {bad}"


def test_link_checks_see_links_the_way_markdown_does(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("[a](../shared/x.md) ![b](img/t.png) [c](https://arxiv.org/abs/2505.21777 \"t\")\n"
                    "`[d](code.md)`\n```\n[e](fenced.md)\n```\n[f](<g.md#h>)\n")
    assert links(page) == ["../shared/x.md", "img/t.png", "https://arxiv.org/abs/2505.21777", "g.md#h"]
    assert [local(t) for t in links(page)] == [True, True, False, True]
