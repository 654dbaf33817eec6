"""``obliviate report`` writes ``report.html``: one self-contained page, opened in headless Chromium.

The store is built by hand (no grid run, to stay fast): a small MLP trained on the toy digits is
the "original"; the other "methods" are copies of it with Gaussian weight noise (two scales), each
evaluated for real (metrics, and the curves of :func:`obliviate.bench.curves.record_curves`) on a
class-wise and a random scenario over two seeds, plus a failed run without metrics or curves.

The browser check (:func:`browser_problems`) fails on any console message (Chromium's
``--enable-logging=stderr`` prints ``console.log``, ``console.error`` and uncaught exceptions alike,
as ``INFO:CONSOLE`` lines without the level, and the report has no script at all, so any message is
an error) and on any network request the page makes (read from Chromium's NetLog, with every host
name resolving to nothing); the static check (:func:`static_problems`) refuses any ``src`` /
``href`` / ``url()`` / ``@import`` that is not a fragment or a ``data:`` URI. Both checkers are
shown to catch broken pages. ``chromium`` is installed by ``.ci/run``; without it the browser tests
are skipped.

Screenshot of a report (then look at the PNG)::

    python tests/integration/test_report_html.py R/report.html /tmp/report.png
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (.ci/run installs Debian's package)")

_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def _chromium(page: Path, *extra: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],  # type: ignore[list-item]
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _page_requests(netlog: Path) -> list[str]:
    """URLs of the network requests the page itself made (Chromium's own background requests have no file:// site)."""
    text = netlog.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a log cut short: close the event list
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    urls = []
    for event in log.get("events", []):
        params = event.get("params") or {}
        if "url" in params and str(params.get("network_isolation_key", "")).startswith("file://"):
            urls.append(str(params["url"]))
    return sorted(set(urls))


def browser_problems(page: Path) -> tuple[list[str], str]:
    """Open ``page`` in headless Chromium: (console messages and network requests of the page, the dumped DOM)."""
    if not page.is_file():
        return [f"no page at {page}"], ""
    with tempfile.TemporaryDirectory() as tmp:
        netlog = Path(tmp) / "netlog.json"
        done = _chromium(page, "--enable-logging=stderr", "--v=0", f"--log-net-log={netlog}", "--dump-dom")
        problems = [f"chromium exit status {done.returncode}"] if done.returncode != 0 else []
        problems += [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
        if netlog.is_file():
            problems += [f"network request: {url}" for url in _page_requests(netlog)]
        else:
            problems.append("chromium wrote no NetLog")
    if "<body" not in done.stdout:
        problems.append("chromium dumped no DOM")
    return problems, done.stdout


_REF = re.compile(
    r"""(?:\b(?:src|href|xlink:href|action|poster|data)\s*=\s*["']?|url\(\s*["']?|@import\s+["'])([^"'\s)>]*)""", re.I
)


def static_problems(text: str) -> list[str]:
    """Every reference in the page that is not an in-page fragment or a data: URI (anything else is a load)."""
    return [f"external reference: {ref!r}" for ref in _REF.findall(text) if not (ref.startswith("#") or ref.startswith("data:"))]


def screenshot(page: Path, png: Path, *, width: int = 1400, height: int = 3000) -> Path:
    """A PNG of ``page`` as headless Chromium draws it."""
    done = _chromium(page, f"--screenshot={png.resolve()}", f"--window-size={width},{height}")
    if done.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium made no screenshot: {done.stderr[-2000:]}")
    return png


# -------------------------------------------------------------------------------------- the checkers
BROKEN = {
    "console_error": '<p>x</p><script>console.error("boom")</script>',
    "exception": "<p>x</p><script>null.foo()</script>",
    "network_image": '<p>x</p><img src="https://example.invalid/a.png" alt="">',
}


@needs_chromium
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_the_browser_check_catches_a_broken_page(tmp_path, name):
    page = tmp_path / f"{name}.html"
    page.write_text(f"<!DOCTYPE html><html><body>{BROKEN[name]}</body></html>")
    problems, dom = browser_problems(page)
    assert problems, f"the check passed a page with {name}"
    assert "<p>x</p>" in dom


@needs_chromium
def test_the_browser_check_passes_a_clean_page(tmp_path):
    page = tmp_path / "clean.html"
    page.write_text('<!DOCTYPE html><html><body><p id="ok">fine</p><a href="#ok">x</a></body></html>')
    problems, dom = browser_problems(page)
    assert problems == [] and 'id="ok"' in dom


def test_the_static_check_catches_external_references():
    for bad in (
        '<img src="https://example.com/a.png">',
        "<link rel=stylesheet href=//cdn.example.com/x.css>",
        '<script src="plot.js"></script>',
        "<style>@import 'http://x/y.css'; </style>",
        "<div style=\"background: url('http://x/y.png')\"></div>",
        '<svg><use xlink:href="other.svg#a"/></svg>',
    ):
        assert static_problems(bad), bad
    assert static_problems('<a href="#s1">s</a><use xlink:href="#p-1"/><rect clip-path="url(#c1)"/><img src="data:,">') == []


# -------------------------------------------------------------------------------------- the report
def _noisy(model: torch.nn.Module, scale: float, seed: int) -> torch.nn.Module:
    import copy

    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return out


def build_store(directory: Path) -> list[str]:
    """A result store of real evaluations with curves (see the module docstring); returns the method labels."""
    import warnings

    import obliviate as ob
    from obliviate.bench.curves import record_curves
    from obliviate.bench.store import ResultStore, provenance
    from obliviate.errors import UncheckedTrainingSetWarning
    from obliviate.report import run_record
    from obliviate.testing import toy_dataset, toy_scenario

    train_set = toy_scenario("classwise").train
    base = ob.train(
        ob.build_model("mlp", toy_dataset(), seed=0), train_set, epochs=30, lr=0.1, seed=0, device="cpu", progress=False
    )
    base = base.model
    metrics = ["forget_acc", "retain_acc", "test_acc", "mia_efficacy", "avg_gap"]
    labels = ["original", "noise σ=0.05", "noise σ=0.2 <b>"]  # the last one checks escaping
    prov = provenance("cpu", 1)
    with ResultStore(directory) as store, warnings.catch_warnings():
        warnings.simplefilter("ignore", UncheckedTrainingSetWarning)  # the toy model's training set is the scenarios'
        for kind in ("classwise", "random"):
            sc = toy_scenario(kind)  # both split the same training set (train minus val): one model serves both
            for seed in (0, 1):
                for label, scale in zip(labels, (0.0, 0.05, 0.2), strict=True):
                    start = time.perf_counter()
                    model = _noisy(base, scale, seed) if scale else base
                    seconds = time.perf_counter() - start if scale else None
                    ev = ob.evaluate(model, sc, reference=base, metrics=metrics, device="cpu")
                    record = run_record(
                        scenario={"name": sc.name, "kind": sc.kind, "dataset": "toy_digits", "forget_size": len(sc.forget)},
                        method="noise" if scale else "original",
                        label=label,
                        seed=seed,
                        metrics=ev.to_dict(),
                        seconds=seconds,
                        oracle_seconds=1.0 if scale else None,
                        bench={"spec": "html-test"},
                        curves=record_curves(ev, sc),
                    )
                    store.add(f"{kind}-{seed}-{label}", record, kind="unlearn", provenance=prov, spec="html-test")
            failed = run_record(
                scenario={"name": sc.name, "kind": sc.kind, "dataset": "toy_digits"},
                method="broken",
                seed=0,
                status="failed",
                error="RuntimeError: <boom> & more",
            )
            store.add(f"{kind}-failed", failed, kind="unlearn", provenance=prov, spec="html-test")
    return [*labels, "broken"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """(report directory, method labels, the exit status and output of ``obliviate report``)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from obliviate.cli import main

    tmp = tmp_path_factory.mktemp("html")
    labels = build_store(tmp / "store")
    text = io.StringIO()
    with redirect_stdout(text), redirect_stderr(text):
        code = main(["report", str(tmp / "store"), "--out", str(tmp / "rep")])
    return tmp / "rep", labels, code, text.getvalue()


class _Page(HTMLParser):
    """Scenario sections, their plots (figures holding an svg) and the table rows' methods."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict[str, list[str]]] = {}
        self.current: str | None = None
        self.figure: str | None = None
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and "scenario" in (a.get("class") or "").split():
            self.current = str(a.get("data-scenario"))
            self.sections[self.current] = {"plots": [], "methods": []}
        elif tag == "tr" and self.current and a.get("data-method"):
            self.sections[self.current]["methods"].append(str(a["data-method"]))
        elif tag == "figure" and self.current:
            self.figure = a.get("data-plot")
        elif tag == "svg" and self.current and self.figure:
            self.sections[self.current]["plots"].append(self.figure)
            self.figure = None
        elif tag == "script":
            self.scripts += 1


def test_report_html_is_written_beside_the_markdown(report):
    rep, labels, code, text = report
    assert code == 0, text
    assert {p.name for p in rep.iterdir()} == {"report.html", "report.md", "results.csv"}
    assert "report.html" in text
    page = (rep / "report.html").read_text(encoding="utf-8")
    assert static_problems(page) == []
    assert "<b>" not in page and "&lt;b&gt;" in page and "&lt;boom&gt; &amp; more" in page  # every string escaped
    parsed = _Page()
    parsed.feed(page)
    assert parsed.scripts == 0
    assert set(parsed.sections) == {"class:3", "random:0.1"}
    for name, section in parsed.sections.items():
        assert sorted(section["methods"]) == sorted(labels), name  # the failed run (no curves) has its row too
        assert sorted(section["plots"]) == ["loss-hist", "mia-roc", "pareto"], name
    assert len(page) < 1_500_000
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # the inlined SVGs' ids do not collide


@needs_chromium
def test_report_renders_in_chromium_without_errors_or_network_loads(report):
    rep, labels, code, text = report
    assert code == 0, text
    problems, dom = browser_problems(rep / "report.html")
    assert problems == []
    parsed = _Page()
    parsed.feed(dom)
    assert set(parsed.sections) == {"class:3", "random:0.1"}
    for name, section in parsed.sections.items():
        assert sorted(section["methods"]) == sorted(labels), name
        assert sorted(section["plots"]) == ["loss-hist", "mia-roc", "pareto"], name
    assert "Provenance" in dom


@needs_chromium
def test_screenshot_of_the_report(report, tmp_path):
    rep = report[0]
    png = screenshot(rep / "report.html", tmp_path / "report.png", width=1200, height=1600)
    head = png.read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    pixels = imread(png)
    assert pixels.shape[:2] == (1600, 1200)
    assert np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0).shape[0] > 50  # something was drawn, not a blank page


if __name__ == "__main__":  # python tests/integration/test_report_html.py REPORT.html OUT.png
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/integration/test_report_html.py REPORT.html OUT.png")
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2])))
