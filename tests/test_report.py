"""The QA report: what the page holds, and how it behaves in a real browser (headless Chromium).

The browser test needs Debian's `chromium` package and the `playwright` Python package (requirements-dev.txt).
Without Chromium it is skipped, saying how to install it; with SPARSEG_REQUIRE_BROWSER=1 (set by .ci/run, which
installs Chromium) it fails instead, so CI always runs it. It opens the page from disk with every network
request recorded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

from sparseg.batch import predict_batch
from sparseg.cases import find_any_cases
from sparseg.report import ReportCase, render
from sparseg.weights import load_predictor

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INSTALL_CHROMIUM = "apt-get update && apt-get install -y chromium"
REQUIRE_BROWSER = "SPARSEG_REQUIRE_BROWSER"


@contextlib.contextmanager
def browser_page():
    """A new page of Debian's Chromium, headless, called in a test's body; without Chromium the test is skipped
    (failed when REQUIRE_BROWSER is 1)."""
    if CHROMIUM is None:
        reason = f"no Chromium for the browser test: install Debian's package (as root: {INSTALL_CHROMIUM})"
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"{reason}; {REQUIRE_BROWSER}=1 requires it")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_the_page_holds_every_case_its_flags_and_no_external_reference() -> None:
    cases = [ReportCase("b-case", "ok", 1.5, "<=5% burden", 2.0, flags=["empty mask"], overlay="b-case_overlay.png",
                        thumbnail_png=b"\x89PNG..."),
             ReportCase("a-case", "failed", float("nan"), "", float("nan"), flags=["failed"], error="x.mha: damaged")]
    page = render(cases, "SPARSeg QA report", ["device: CPU"], ["CHECKPOINT WAS TRAINED ON SYNTHETIC DATA"])
    assert page.count('<tr class="') == 2 and "<h3>b-case</h3>" in page and "<h3>a-case</h3>" in page
    assert "empty mask" in page and "x.mha: damaged" in page and "SYNTHETIC" in page
    assert "data:image/png;base64," in page and '<img loading="lazy" src="b-case_overlay.png"' in page
    assert "http://" not in page and "https://" not in page and "src=\"/" not in page


def test_text_cells_sort_by_their_own_text_and_burden_groups_by_burden(tmp_path: Path) -> None:
    """A status or burden group cell's sort key was escaped twice ("&amp;lt;1%"), and "1%-5%" sorted as 1."""
    groups = [">5%", "<1%", "1%-5%", "", "<1%"]
    cases = [ReportCase(f"c{k}", "ok", 1.0, group, 1.0) for k, group in enumerate(groups)]
    page = render(cases, "t", [], [])
    assert "&amp;lt;" not in page and 'data-sort="0"' in page and 'data-sort="2"' in page
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    with browser_page() as page_:
        page_.goto(path.as_uri())
        headers = page_.eval_on_selector_all("#cases th", "cells => cells.map(c => c.textContent)")
        page_.click(f"#cases th:nth-child({headers.index('burden group') + 1})")
        column = headers.index("burden group")
        shown = page_.eval_on_selector_all("#cases tbody tr", f"rows => rows.map(r => r.cells[{column}].textContent)")
        assert shown == ["<1%", "<1%", "1%-5%", ">5%", ""]


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
    assert all(f"<h3>{case_id}</h3>" in page for case_id in ids)
    assert page.count("data:image/png;base64,") == len(ids)
    assert "<th>DSC</th>" in page and "against its label" in page and "BONBID-HIE 2024 rule" in page
    assert "checkpoint: " in page and "settings: tta=off" in page


def test_the_report_in_a_real_browser(report: Path) -> None:
    """Every thumbnail loads, every overlay once scrolled to, the table sorts, and the page asks the network for
    nothing."""
    requests: list[str] = []
    with browser_page() as page:
        page.on("request", lambda request: requests.append(request.url))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        widths = page.eval_on_selector_all("td.picture img",
                                           "images => images.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == 6 and all(width > 0 for width in widths), widths
        for overlay in page.query_selector_all(".case img"):
            overlay.scroll_into_view_if_needed()
            page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=overlay)
        assert len(page.query_selector_all(".case img")) == 6

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
    assert requests and all(url.startswith(("file://", "data:")) for url in requests), requests


PEOPLE_S_IDS = ["subject 1", "O'Brien", "twin a, visit 2", "Zoë Ångström", "<script>"]
"""Case ids as clinical exports name files (tests/test_cases.py has more)."""


@pytest.fixture(scope="module")
def people_s_ids(tiny_dataset: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sparseg predict --report` on a manifest whose case ids have spaces, an apostrophe, a comma, accents and
    `<script>`, writing NIfTI masks; the output folder."""
    import csv

    from sparseg.cli import main

    folder = tmp_path_factory.mktemp("people")
    with open(folder / "cohort.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "adc", "zadc", "label"])
        for case_id, case in zip(PEOPLE_S_IDS, find_any_cases(tiny_dataset)):
            writer.writerow([case_id, case.adc, case.z, case.label])
    out = folder / "out"
    assert main(["predict", "--data", str(folder / "cohort.csv"), "--out", str(out), "--weights", str(tiny_checkpoint),
                 "--device", "cpu", "--report", "--mask-format", "nii.gz"]) == 0
    return out


def test_people_s_case_ids_name_outputs_rows_and_scores(people_s_ids: Path) -> None:
    import csv

    from sparseg.evaluation import evaluate

    for case_id in PEOPLE_S_IDS:
        for name in (f"{case_id}_lesion.nii.gz", f"{case_id}_overlay.png"):
            assert (people_s_ids / name).is_file(), name
    with open(people_s_ids / "summary.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["case_id"] for row in rows) == sorted(PEOPLE_S_IDS)
    assert {row["status"] for row in rows} == {"ok"}
    report = evaluate(people_s_ids.parent / "cohort.csv", people_s_ids)
    assert sorted(row.case_id for row in report.rows) == sorted(PEOPLE_S_IDS)
    page = (people_s_ids / "report.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;" in page and page.count("<script>") == 1  # the page's own sorting script only
    assert "O&#x27;Brien" in page and "Zoë Ångström" in page


def test_people_s_case_ids_in_a_real_browser(people_s_ids: Path) -> None:
    """The page shows each id as text, runs no script but its own, and each id's link leads to its case."""
    dialogs: list[str] = []
    with browser_page() as page:
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto((people_s_ids / "report.html").as_uri())
        page.wait_for_load_state("load")
        shown = page.eval_on_selector_all("#cases tbody tr", "rows => rows.map(r => r.cells[0].textContent)")
        assert sorted(shown) == sorted(PEOPLE_S_IDS)
        assert page.eval_on_selector_all("script", "scripts => scripts.length") == 1
        for case_id in PEOPLE_S_IDS:
            target = page.get_by_role("link", name=case_id, exact=True).get_attribute("href")
            assert page.eval_on_selector(target, "section => section.querySelector('h3').textContent") == case_id
    assert dialogs == []


def _cohort(folder: Path, count: int) -> list[ReportCase]:
    """`count` small generated cases, each with its own overlay file beside the page and its thumbnail (eight
    pictures drawn, each case a copy of one: drawing is not what the page's tests measure)."""
    import numpy as np

    from sparseg.plots import overlay_png, thumbnail_png

    rng = np.random.default_rng(0)
    pictures = []
    for variant in range(min(count, 8)):
        adc = rng.uniform(500, 2000, (3, 32, 32)).astype(np.float32)
        adc[:, :4] = 0
        mask = np.zeros(adc.shape, bool)
        mask[1, 10 : 12 + variant, 12:18] = True
        png = overlay_png(adc, mask, None, (3.0, 1.0, 1.0), f"picture {variant}", n_slices=1, dpi=40)
        pictures.append((png, thumbnail_png(png), float(mask.sum()) / 1000))
    cases = []
    for number in range(count):
        png, thumbnail, volume = pictures[number % len(pictures)]
        name = f"case-{number:04d}_overlay.png"
        (folder / name).write_bytes(png)
        cases.append(ReportCase(f"case-{number:04d}", "ok", volume, "<1%", 0.5 + number % 7,
                                overlay=name, thumbnail_png=thumbnail))
    return cases


@pytest.mark.slow
def test_a_thousand_case_report_stays_small_and_loads(tmp_path: Path) -> None:
    """The page embeds only thumbnails: 1,000 cases load in the browser, overlays only as they scroll into view,
    and the table still sorts. Prints the page's size and times (the closing note's figures)."""
    import time

    cases = _cohort(tmp_path, 1000)
    path = tmp_path / "report.html"
    path.write_text(render(cases, "SPARSeg QA report", [], []), encoding="utf-8")
    size_mb = path.stat().st_size / 1e6
    assert size_mb < 10, size_mb
    requests: list[str] = []
    with browser_page() as page:
        page.on("request", lambda request: requests.append(request.url))
        started = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        loaded = time.perf_counter() - started
        rows = page.eval_on_selector_all("#cases tbody tr", "rows => rows.length")
        thumbnails = page.eval_on_selector_all("td.picture img", "images => images.filter(i => i.naturalWidth).length")
        overlays = sum(1 for url in requests if url.endswith("_overlay.png"))
        started = time.perf_counter()
        page.click("#cases th:nth-child(6)")  # seconds
        sorted_in = time.perf_counter() - started
        first = page.eval_on_selector_all("#cases tbody tr",
                                          "rows => rows.slice(0, 3).map(r => r.cells[5].dataset.sort)")
    print(f"\n1000-case report: {size_mb:.2f} MB, loaded in {loaded:.2f} s, sorted in {sorted_in:.2f} s, "
          f"{overlays} of 1000 overlays fetched at load")
    assert rows == 1000 and thumbnails == 1000
    assert overlays < 100  # lazy: only those near the top
    assert [float(v) for v in first] == [0.5, 0.5, 0.5]


def test_sparseg_report_merges_every_part_of_a_folder(tiny_dataset: Path, tiny_checkpoint: Path,
                                                      tmp_path: Path) -> None:
    """A cohort split over machines (--part) gets one page: every case, its overlay and, with --data, its scores."""
    from sparseg.cli import main

    out = tmp_path / "out"
    for part in ("1", "2"):
        assert main(["predict", "--data", str(tiny_dataset), "--out", str(out), "--weights", str(tiny_checkpoint),
                     "--device", "cpu", "--overlays", "--part", part, "--parts", "2"]) == 0
    assert not (out / "report.html").exists()
    assert main(["report", str(out), "--data", str(tiny_dataset)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    ids = [case.case_id for case in find_any_cases(tiny_dataset)]
    assert all(f"<h3>{case_id}</h3>" in page for case_id in ids)
    assert page.count('<td class="picture"') == len(ids) and page.count('loading="lazy"') == len(ids)
    assert "<th>DSC</th>" in page and "summary_part1of2.csv, summary_part2of2.csv" in page
    assert main(["report", str(tmp_path / "nothing-here")]) == 2
