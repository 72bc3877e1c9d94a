"""The QA report: what the page holds, and how it behaves in a real browser (headless Chromium).

The browser test needs Debian's `chromium` package and the `playwright` Python package (requirements-dev.txt).
Without Chromium it is skipped, saying how to install it; with SPARSEG_REQUIRE_BROWSER=1 (set by .ci/run, which
installs Chromium) it fails instead, so CI always runs it. It opens the page from disk with every network
request recorded.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sparseg.cases import find_any_cases
from sparseg.jobs import load_predictor, predict_batch
from sparseg.report import ReportCase, render

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INSTALL_CHROMIUM = "apt-get update && apt-get install -y chromium"
REQUIRE_BROWSER = "SPARSEG_REQUIRE_BROWSER"


@pytest.fixture
def chromium() -> str:
    """The path of Debian's Chromium; without it the test is skipped (failed when REQUIRE_BROWSER is 1)."""
    if CHROMIUM is None:
        reason = f"no Chromium for the browser test: install Debian's package (as root: {INSTALL_CHROMIUM})"
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"{reason}; {REQUIRE_BROWSER}=1 requires it")
        pytest.skip(reason)
    return CHROMIUM


def test_the_page_holds_every_case_its_flags_and_no_external_reference() -> None:
    cases = [ReportCase("b-case", "ok", 1.5, "<=5% burden", 2.0, flags=["empty mask"], overlay_png=b"\x89PNG..."),
             ReportCase("a-case", "failed", float("nan"), "", float("nan"), flags=["failed"], error="x.mha: damaged")]
    page = render(cases, "SPARSeg QA report", ["device: CPU"], ["CHECKPOINT WAS TRAINED ON SYNTHETIC DATA"])
    assert page.count('<tr class="') == 2 and 'id="b-case"' in page and 'id="a-case"' in page
    assert "empty mask" in page and "x.mha: damaged" in page and "SYNTHETIC" in page
    assert "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page and "src=\"/" not in page


@pytest.fixture(scope="module")
def report(tiny_dataset: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of a batch of the six tiny labelled cases (their labels give per-case scores)."""
    out = tmp_path_factory.mktemp("report")
    predict_batch(find_any_cases(tiny_dataset), out, load_predictor([tiny_checkpoint], "cpu"), overlays=True,
                  report=True)
    return out / "report.html"


def test_a_batch_report_has_every_case_with_its_picture_and_scores(report: Path, tiny_dataset: Path) -> None:
    page = report.read_text()
    ids = [case.case_id for case in find_any_cases(tiny_dataset)]
    assert all(f'id="{case_id}"' in page for case_id in ids)
    assert page.count("data:image/png;base64,") == len(ids)
    assert "<th>DSC</th>" in page and "against its label" in page and "BONBID-HIE 2024 rule" in page
    assert "checkpoint: " in page and "settings: tta=off" in page


def test_the_report_in_a_real_browser(report: Path, chromium: str) -> None:
    """Every picture loads, the table sorts, and the page asks the network for nothing."""
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
            assert len(widths) == 6 and all(width > 0 for width in widths), widths

            def column(index: int) -> list[str]:
                return page.eval_on_selector_all(
                    "#cases tbody tr", f"rows => rows.map(r => r.cells[{index}].dataset.sort)")

            headers = page.eval_on_selector_all("#cases th", "cells => cells.map(c => c.textContent)")
            lesion = headers.index("lesion (mL)")
            page.click(f"#cases th:nth-child({lesion + 1})")
            ascending = [float(v) for v in column(lesion)]
            assert ascending == sorted(ascending)
            page.click(f"#cases th:nth-child({lesion + 1})")
            descending = [float(v) for v in column(lesion)]
            assert descending == sorted(ascending, reverse=True) and descending != ascending
            page.click("#cases th:nth-child(1)")
            assert column(0) == sorted(column(0))
        finally:
            browser.close()
    assert requests and all(url.startswith(("file://", "data:")) for url in requests), requests
