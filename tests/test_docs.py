"""The README and docs/: short README, working relative links (files and #anchors), every
docs page reachable from the README, the results markers, and every Python code block runs.

A block that is not meant to run here (GPU-only, hours of training) is preceded by
``<!-- norun: the reason -->``; the others run as written, from a folder that has the
checkout's ``mzsr_fast/data`` (the bundled images and kernel), in one subprocess (one torch
import), each block in its own empty folder and namespace."""
import glob
import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
PAGES = [README] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
NORUN = re.compile(r"^<!--\s*norun:\s*(.*?)\s*-->\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _rel(p):
    return os.path.relpath(p, REPO)


def python_blocks(path):
    """[(line, code, norun reason or None)] of the ```python blocks of a markdown file."""
    lines = open(path).read().splitlines()
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            j = start
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            m = NORUN.match(prev.strip())
            out.append((start + 1, "\n".join(lines[start:j]) + "\n", m.group(1) if m else None))
            i = j
        i += 1
    return out


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path):
    text = open(path).read()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # '#' lines inside code are not headings
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, re.M)}


def test_readme_fits_on_a_screen():
    n = len(open(README).read().splitlines())
    assert n <= 200, f"README.md has {n} lines; details belong in docs/"


def test_slug():
    assert _slug("Folders and batches: `upscale_files`") == "folders-and-batches-upscale_files"
    assert _slug("Threads, state and determinism") == "threads-state-and-determinism"
    assert _slug("### CPU: 2-core AMD EPYC (Zen 4)".lstrip("# ")) == "cpu-2-core-amd-epyc-zen-4"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", open(page).read(), flags=re.S)
    bad = []
    for m in LINK.finditer(text):
        target = m.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = os.path.normpath(os.path.join(os.path.dirname(page), file)) if file else page
        if not os.path.exists(path):
            bad.append(f"{target}: {_rel(path)} does not exist")
        elif anchor and path.endswith(".md") and anchor not in _anchors(path):
            bad.append(f"{target}: no heading '#{anchor}' in {_rel(path)}")
    assert not bad, f"{_rel(page)}:\n" + "\n".join(bad)


def test_readme_links_every_docs_page_and_has_the_results_block():
    text = open(README).read()
    for page in PAGES[1:]:
        assert f"](docs/{os.path.basename(page)})" in text, f"README does not link {_rel(page)}"
    start, end = text.find("<!-- results:start -->"), text.find("<!-- results:end -->")
    assert text.count("<!-- results:start -->") == 1 and text.count("<!-- results:end -->") == 1
    assert 0 <= start < end and "|---" in text[start:end], "one headline table between the results markers"


def test_norun_blocks_give_a_reason():
    for page in PAGES:
        for line, _, reason in python_blocks(page):
            assert reason is None or reason.strip(), f"{_rel(page)}:{line}: <!-- norun: --> needs a reason"


_RUNNER = r"""
import json, os, sys, traceback
blocks = json.load(open(sys.argv[1]))
data = sys.argv[2]
results = []
for i, b in enumerate(blocks):
    d = os.path.join(os.path.dirname(sys.argv[1]), f"block{i}")
    os.makedirs(os.path.join(d, "mzsr_fast"))
    os.symlink(data, os.path.join(d, "mzsr_fast", "data"))
    os.chdir(d)
    try:
        exec(compile(b["code"], b["where"], "exec"), {"__name__": "__main__"})
        results.append(None)
    except BaseException:
        results.append(traceback.format_exc(limit=-3))
json.dump(results, open(sys.argv[1] + ".out", "w"))
"""


def test_python_blocks_run(tmp_path):
    blocks = []
    for page in PAGES:
        for line, code, reason in python_blocks(page):
            if reason is None:
                blocks.append({"where": f"{_rel(page)}:{line}", "code": code})
    # the README's and the API page's examples at least (a count that cannot pass on nothing)
    assert len(blocks) >= 6, [b["where"] for b in blocks]
    assert any(b["where"].startswith("README.md") for b in blocks)
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps(blocks))
    runner = tmp_path / "runner.py"
    runner.write_text(_RUNNER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(runner), str(spec), os.path.join(REPO, "mzsr_fast", "data")],
                       capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((tmp_path / "blocks.json.out").read_text())
    failed = [f"{b['where']}:\n{err}" for b, err in zip(blocks, results) if err is not None]
    assert not failed, "\n\n".join(failed)


@pytest.mark.parametrize("name", ["adapt_and_upscale", "upscale_files"])
def test_documented_signatures_match_the_code(name):
    """docs/api.md's signature line lists the function's parameters, in order, with their
    defaults (a parameter added to the code and not to the docs fails this)."""
    import inspect

    import mzsr_fast

    text = open(os.path.join(REPO, "docs", "api.md")).read()
    m = re.search(rf"^`mzsr_fast\.{name}\((.*)\)`$", text, re.M)
    assert m, f"docs/api.md has no signature line for {name}"
    doc = [a.strip() for a in m.group(1).split(",") if a.strip() not in ("*", "")]
    code = []
    for p in inspect.signature(getattr(mzsr_fast, name)).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            code.append(f"**{p.name}")
        elif p.default is p.empty:
            code.append(p.name)
        else:
            code.append(f"{p.name}={p.default!r}".replace("'", '"'))
    assert doc == code


_REPO_PATH = re.compile(r"`((?:mzsr_fast|benchmarks|scripts|tests|csrc|kernels|runs|docs)/[^`\s]*)`")


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_named_repo_paths_exist(page):
    """A path of this repository written in backticks (`mzsr_fast/plan.py`,
    `benchmarks/results/...json`) exists: the docs follow files that move."""
    text = open(page).read()
    bad = []
    for m in _REPO_PATH.finditer(text):
        path = m.group(1).split("::")[0].rstrip(",.;:)")
        if re.search(r"[*<>{}$]|\.\.\.", path):  # patterns and placeholders
            continue
        if not os.path.exists(os.path.join(REPO, path)):
            bad.append(path)
    assert not bad, f"{_rel(page)} names missing paths: {sorted(set(bad))}"
