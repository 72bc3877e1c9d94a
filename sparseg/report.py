"""The QA report of a batch: one HTML page a person can look through, at one case or a thousand.

`sparseg predict --report` writes `report.html` beside the masks, and
`sparseg report DIR` writes one for a whole output folder, every part's
summary merged. The page holds the summary table (sortable by any column, a
small picture of each case embedded in its row), then per case its overlay
(ADC with the predicted contour, and the label's where there is one, cropped
to the brain), lesion volume, burden group, the challenge's and lesion-wise
scores where a label exists, the ensemble's agreement, and flags for what
deserves a look (an empty mask, an implausible unit or spacing, a failed case,
models that disagree, weights trained on synthetic data). The full overlays
are the `<case>_overlay.png` files beside the page, loaded only as they
scroll into view, so a 1,000-case page stays a few MB; the thumbnails and the
sorting script are inline, and the page asks the network for nothing.
"""

from __future__ import annotations

import base64
import html
import math
import urllib.parse
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sparseg import __version__
from sparseg.config import EvaluationConfig, burden_groups
from sparseg.evaluation import RULES, CaseRow
from sparseg.io import write_text
from sparseg.lesions import pooled


@dataclass
class ReportCase:
    """What the report shows of one case."""

    case_id: str
    status: str
    lesion_ml: float
    burden_group: str
    seconds: float
    flags: list[str] = field(default_factory=list)
    error: str = ""
    overlay: str = ""
    """The file name of the case's overlay PNG beside the page ("" for none)."""
    thumbnail_png: bytes | None = None
    """A small picture for its table row (`plots.thumbnail_png`), embedded."""
    scores: CaseRow | None = None
    """The challenge's scores against the case's label, where it has one."""
    agreement: float = math.nan
    """How much the members of a fold ensemble agree on the case (mean pairwise Dice); NaN with one model."""


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; cursor: pointer; user-select: none; }
th.sorted-up::after { content: " \\25B2"; } th.sorted-down::after { content: " \\25BC"; }
td:first-child, th:first-child, td.text { text-align: left; }
tr.flagged td { background: #fff4e0; } tr.failed td { background: #fde0e0; }
.flag { display: inline-block; background: #e8a33d; color: white; border-radius: 0.3em; padding: 0 0.4em;
        margin: 0 0.2em 0.2em 0; font-size: 0.85em; }
.case { border-top: 1px solid #ccc; padding-top: 0.5em; margin-top: 1.5em; }
.case img { max-width: 100%; height: auto; }
td.picture { padding: 0.1em; } td.picture img { display: block; height: 40px; }
.warning { color: #a33; font-weight: bold; }
"""

SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (header, column) {
  header.addEventListener("click", function () {
    var table = header.closest("table"), body = table.tBodies[0];
    var up = !header.classList.contains("sorted-up");
    table.querySelectorAll("th").forEach(function (h) { h.classList.remove("sorted-up", "sorted-down"); });
    header.classList.add(up ? "sorted-up" : "sorted-down");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column].dataset.sort, y = b.cells[column].dataset.sort;
      var nx = parseFloat(x), ny = parseFloat(y), order;
      if (!isNaN(nx) && !isNaN(ny)) { order = nx - ny; }
      else if (isNaN(nx) !== isNaN(ny)) { order = isNaN(nx) ? 1 : -1; }
      else { order = x.localeCompare(y); }
      return up ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def _number(value: float | None, digits: int) -> tuple[str, str]:
    """(shown, sort key) of a number; undefined values show as "n/a" and sort last."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a", ""
    return f"{value:.{digits}f}", repr(float(value))


def _cell(shown: str, key: str | None = None, text: bool = False) -> str:
    klass = ' class="text"' if text else ""
    return f'<td{klass} data-sort="{html.escape(key if key is not None else shown)}">{shown}</td>'


def _group_order(group: str) -> str:
    """The sort key of a burden group: its rank from the smallest burden up ("" for none: sorts last)."""
    groups = burden_groups(EvaluationConfig.burden_edges)
    return str(groups.index(group)) if group in groups else ""


def _thumbnail(case: ReportCase, number: int) -> str:
    if not case.thumbnail_png:
        return _cell("", "")
    data = base64.b64encode(case.thumbnail_png).decode("ascii")
    return (f'<td class="picture" data-sort=""><a href="#case-{number}"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(case.case_id)}: picture"></a></td>')


def _lesions_found(scores: CaseRow | None) -> str:
    """"found of true" lesions, sorting by the share found (a case without lesions sorts last)."""
    if scores is None:
        return _cell("", "")
    share = scores.lesion_sensitivity
    merged = f" ({scores.lesions_merged} merged)" if scores.lesions_merged else ""
    return _cell(f"{scores.lesions_detected}/{scores.lesions_true}{merged}",
                 "" if math.isnan(share) else f"{share:.6f}")


def _flags(flags: list[str]) -> str:
    return "".join(f'<span class="flag">{html.escape(flag)}</span>' for flag in flags)


def render(cases: list[ReportCase], title: str, context: list[str], warnings: list[str]) -> str:
    """The page: `context` lines (weights, settings, machine) and `warnings` at the top, the table, the cases."""
    labelled = any(case.scores is not None for case in cases)
    headers = ["case", "picture", "status", "lesion (mL)", "burden group", "seconds", "flags"]
    ensemble = any(not math.isnan(case.agreement) for case in cases)
    if ensemble:
        headers[5:5] = ["models agree"]
    if labelled:
        headers[5:5] = ["DSC", "MASD (mm)", "NSD", "lesions found", "false lesions"]
    rows = []
    for number, case in enumerate(cases):
        cells = [_cell(f'<a href="#case-{number}">{html.escape(case.case_id)}</a>', case.case_id, text=True),
                 _thumbnail(case, number),
                 _cell(html.escape(case.status), case.status, text=True),
                 _cell(*_number(case.lesion_ml, 2)),
                 _cell(html.escape(case.burden_group), _group_order(case.burden_group), text=True)]
        if labelled:
            scores = case.scores
            cells += [_cell(*_number(scores.dsc if scores else None, 3)),
                      _cell(*_number(scores.masd if scores else None, 2)),
                      _cell(*_number(scores.nsd if scores else None, 3)),
                      _lesions_found(scores), _cell(*_number(scores.lesions_false if scores else None, 0))]
        if ensemble:
            cells.append(_cell(*_number(case.agreement, 2)))
        cells += [_cell(*_number(case.seconds, 1)), _cell(_flags(case.flags), ";".join(case.flags), text=True)]
        klass = "failed" if case.status == "failed" else "flagged" if case.flags else ""
        rows.append(f'<tr class="{klass}">' + "".join(cells) + "</tr>")
    sections = []
    for number, case in enumerate(cases):
        facts = [f"status {html.escape(case.status)}", f"lesion {_number(case.lesion_ml, 2)[0]} mL",
                 f"burden {html.escape(case.burden_group or 'n/a')}"]
        if case.scores is not None:
            facts.append(f"DSC {_number(case.scores.dsc, 3)[0]}, MASD {_number(case.scores.masd, 2)[0]} mm, "
                         f"NSD {_number(case.scores.nsd, 3)[0]} (against its label); lesions: "
                         f"{case.scores.lesions_detected} of {case.scores.lesions_true} found, "
                         f"{case.scores.lesions_false} false"
                         + (f", {case.scores.lesions_merged} merged into a predicted lesion that touches another "
                            "true one" if case.scores.lesions_merged else ""))
        picture = ""
        if case.overlay:
            picture = (f'<img loading="lazy" src="{html.escape(urllib.parse.quote(case.overlay))}" '
                       f'alt="{html.escape(case.case_id)}: ADC with the predicted contour">')
        error = f'<p class="warning">{html.escape(case.error)}</p>' if case.error else ""
        sections.append(f'<section class="case" id="case-{number}"><h3>{html.escape(case.case_id)}'
                        f"</h3><p>{'; '.join(facts)} {_flags(case.flags)}</p>{error}{picture}</section>")
    counts: dict[str, int] = {}
    for case in cases:
        counts[case.status] = counts.get(case.status, 0) + 1
    flagged = sum(1 for case in cases if case.flags)
    plural = "" if len(cases) == 1 else "s"
    overview = (f"{len(cases)} case{plural}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
                + f"; {flagged} flagged for a look")
    if labelled:
        scored = [case.scores for case in cases if case.scores is not None]
        means = {name: [getattr(s, name) for s in scored if not math.isnan(getattr(s, name))]
                 for name in ("dsc", "masd", "nsd")}
        overview += "; mean over the {} labelled: ".format(len(scored)) + ", ".join(
            f"{name.upper()} {sum(v) / len(v):.3f}" if v else f"{name.upper()} n/a" for name, v in means.items())
        overview += f" (MASD and NSD: the {RULES[0].label} rule, spacing (z, x, y), as the organisers' current script)"
        lesions = pooled(asdict(s) for s in scored)
        overview += (f"; lesions: {lesions['lesions_detected']} of {lesions['lesions_true']} found, "
                     f"{lesions['lesions_false']} false (lesion-wise F1 {_number(lesions['lesion_f1'], 3)[0]})")
    top = "".join(f'<p class="warning">{html.escape(w)}</p>' for w in warnings)
    top += "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in context) + "</ul>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>{top}<p>{html.escape(overview)}</p>
<p>Click a column's header to sort by it; rows with flags deserve a look.</p>
<table class="sortable" id="cases"><thead><tr>{''.join(f'<th>{h}</th>' for h in headers)}</tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{''.join(sections)}
<script>{SORT_SCRIPT}</script></body></html>
"""


def write_report(path: Path, cases: list[ReportCase], context: list[str], warnings: list[str]) -> Path:
    """`render` written to `path` (atomically), with the time and SPARSeg version among the context lines."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    context = [*context, f"written {stamp} by SPARSeg {__version__}"]
    return write_text(path, render(cases, "SPARSeg QA report", context, warnings))
