"""The HTML report of a result store: one self-contained page of tables and plots per scenario.

``obliviate report DIR --out R`` writes it as ``R/report.html`` beside the markdown report. The
page loads nothing: its style sheet is inline, it has no script, and its plots are drawn with
matplotlib to SVG and inlined (text kept as text, so method names in plots are searchable). Per
(dataset, scenario) it shows:

- the method x metric table: mean ± std over seeds (accuracies, MIA and avg gap in %), the avg gap
  to the retrained oracle, and how many runs of each method ended ``ok`` / ``collapsed`` /
  ``failed`` / ``diverged``; the warnings and errors runs raised are numbered under it;
- a time-vs-gap plot: mean seconds (log scale) against mean avg gap, one point per method, with
  the Pareto front (no other method is both faster and closer to the oracle) as a step line;
- per method, the forget and validation loss histograms (``curves.loss_hist`` of
  :func:`obliviate.bench.curves.record_curves`, summed over seeds, as fractions of samples);
- the ROC curves of the loss-threshold membership attack on the forget set (``curves.mia_roc``,
  TPR averaged over seeds on the shared FPR grid), the AUC in the legend.

Runs without ``curves`` appear in the table and the time-vs-gap plot only. The provenance of the
runs closes the page. Elements carry ids and data attributes for tests and scripts:
``section.scenario[data-dataset][data-scenario]``, ``tr[data-method]``, ``figure.plot[data-plot]``.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..report import _HEADERS, RESULT_STATUSES, aggregate, format_cell
from .report import REPORT_COLUMNS, _provenance, group_records, pool_rows, split_records

__all__ = ["html_report", "STATUS_COLUMNS"]

STATUS_COLUMNS: tuple[str, ...] = ("ok", "collapsed", "failed", "diverged")
"""The run statuses counted in every table (``unchecked`` is added when a run has it)."""

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 0 auto; max-width: 1300px;
       padding: 1.5rem 2rem 3rem; color: #1b1f24; background: #fff; line-height: 1.45; }
h1 { font-size: 1.7rem; margin: 0 0 .4rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .6rem; padding-bottom: .25rem; border-bottom: 2px solid #d0d7de; }
h2 small { font-weight: normal; color: #57606a; font-size: .85rem; }
p.lead, p.summary { color: #3d444d; max-width: 75rem; }
nav ul { display: flex; flex-wrap: wrap; gap: .3rem 1.2rem; padding: 0; list-style: none; }
nav a { color: #0969da; text-decoration: none; }
table.metrics { border-collapse: collapse; font-size: .88rem; margin: .4rem 0 .6rem; font-variant-numeric: tabular-nums; }
table.metrics th, table.metrics td { padding: .28rem .6rem; border-bottom: 1px solid #e4e8ec; white-space: nowrap; }
table.metrics thead th { background: #f3f5f7; border-bottom: 2px solid #d0d7de; text-align: right; vertical-align: bottom; }
table.metrics thead th:first-child, table.metrics tbody th { text-align: left; }
table.metrics td { text-align: right; }
table.metrics td.status { color: #8c959f; }
table.metrics td.status.nonzero { color: #1b1f24; font-weight: 600; }
table.metrics td.status.bad.nonzero { color: #cf222e; }
table.metrics th.group-start, table.metrics td.group-start { border-left: 2px solid #d0d7de; }
table.metrics tbody tr:hover { background: #f6f8fa; }
sup.note { color: #9a6700; }
ol.notes { font-size: .82rem; color: #57606a; margin-top: 0; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem 1.5rem; align-items: flex-start; }
figure.plot { margin: 0; display: table; }
figure.plot svg { max-width: 100%; height: auto; display: block; }
figcaption { display: table-caption; caption-side: bottom; font-size: .8rem; color: #57606a; padding-top: .3rem; }
p.empty { color: #8c959f; font-style: italic; }
footer { margin-top: 2.5rem; font-size: .85rem; color: #57606a; }
footer ul { padding-left: 1.2rem; }
"""

_BAD_STATUSES = {"collapsed", "failed", "diverged"}


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _mpl_text(text: str) -> str:
    """A label matplotlib draws literally (``$`` would start mathtext)."""
    return text.replace("$", r"\$")


# ---------------------------------------------------------------------------------------------- SVG
def _svg(fig: Any, prefix: str) -> str:
    """``fig`` as an inline ``<svg>``: no XML prolog, no metadata, every id prefixed (ids stay unique in the page)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": prefix}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = re.sub(r'\bhref="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})", text)
    return text.strip()


def _figure(width: float, height: float) -> Any:
    """A matplotlib figure outside pyplot (no GUI backend, nothing global to close)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


# ---------------------------------------------------------------------------------------------- data
def _row_key(record: dict[str, Any]) -> tuple[str, str]:
    """The (scenario, method) key :func:`obliviate.report.aggregate` groups a record under."""
    name = (record.get("scenario") or {}).get("name", "")
    return (f"{name} ({record['variant']})" if record.get("variant") else name, record.get("label") or record.get("method") or "")


def _display(row: dict[str, Any], scenario: str) -> str:
    return row["method"] if row["scenario"] == scenario else f"{row['method']} · {row['scenario']}"


def _loss_hist(runs: Sequence[dict[str, Any]]) -> tuple[list[float], dict[str, np.ndarray]] | None:
    """Summed ``loss_hist`` counts of the runs that have curves (those on the first run's edges)."""
    edges: list[float] | None = None
    sums: dict[str, np.ndarray] = {}
    for r in runs:
        h = ((r.get("curves") or {}).get("loss_hist")) if r.get("status", "ok") in RESULT_STATUSES else None
        if not h:
            continue
        if edges is None:
            edges = list(h["edges"])
        elif list(h["edges"]) != edges:
            continue
        for split in ("forget", "val"):
            if split in h:
                sums[split] = sums.get(split, np.zeros(len(edges) - 1)) + np.asarray(h[split], dtype=float)
    return (edges, sums) if edges is not None and sums else None


def _roc(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean TPR over the runs with ``mia_roc`` (on the first run's FPR grid), the AUCs, the non-member split."""
    fpr: list[float] | None = None
    tprs, aucs, nonmembers = [], [], set()
    for r in runs:
        roc = ((r.get("curves") or {}).get("mia_roc")) if r.get("status", "ok") in RESULT_STATUSES else None
        if not roc:
            continue
        if fpr is None:
            fpr = list(roc["fpr"])
        elif list(roc["fpr"]) != fpr:
            continue
        tprs.append(roc["tpr"])
        aucs.append(float(roc["auc"]))
        nonmembers.add(str(roc.get("nonmembers", "?")))
    if fpr is None:
        return None
    return {"fpr": np.asarray(fpr), "tpr": np.mean(np.asarray(tprs, dtype=float), axis=0), "auc": aucs, "nonmembers": nonmembers}


# ---------------------------------------------------------------------------------------------- plots
def _pareto_plot(points: list[tuple[str, float, float, Any]], prefix: str) -> str:
    """Seconds (log) vs avg gap (%) per method, the Pareto front as a step line."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = _figure(5.4, 4.0)
    ax = fig.add_subplot()
    labels = []
    for name, sec, gap, color in points:
        ax.scatter([sec], [100 * gap], color=color, s=36, zorder=3, edgecolors="white", linewidths=0.6)
        labels.append(ax.annotate(_mpl_text(name), (sec, 100 * gap), xytext=(5, 3), textcoords="offset points", fontsize=8))
    front: list[tuple[float, float]] = []
    for _, sec, gap, _ in sorted(points, key=lambda p: (p[1], p[2])):
        if not front or gap < front[-1][1]:
            front.append((sec, gap))
    if front:
        xs = [p[0] for p in front] + [max(p[1] for p in points) * 1.5]
        ys = [100 * p[1] for p in front] + [100 * front[-1][1]]
        ax.step(xs, ys, where="post", color="#6e7781", lw=1.2, ls="--", zorder=2, label="Pareto front")
        ax.legend(loc="best", fontsize=8, frameon=False)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("seconds (mean over seeds, log scale)")
    ax.set_ylabel("avg gap to the oracle (%, mean)")
    ax.set_title("time vs gap to the retrained oracle", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.margins(x=0.2, y=0.12)
    _spread_labels(fig, labels)
    return _svg(fig, prefix)


def _spread_labels(fig: Any, labels: list[Any]) -> None:
    """Move point labels off each other: the first offset (right of the point, then above, below and left of it,
    farther each round) at which a label overlaps no label placed before and stays inside the axes; a label with
    no such place keeps its first one.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if len(labels) < 2:
        return
    FigureCanvasAgg(fig)
    fig.canvas.draw()  # lays the figure out, so text extents are final
    renderer = fig.canvas.get_renderer()
    placed: list[Any] = []
    candidates = [(5, 3)]
    for step in range(1, 7):
        candidates += [(5, 3 + 9 * step), (5, 3 - 9 * step), (-5, 3 + 9 * step), (-5, 3 - 9 * step)]
    for text in sorted(labels, key=lambda t: (-t.xy[1], t.xy[0])):
        frame = text.axes.get_window_extent(renderer)
        first = text.xyann, text.get_ha()
        for dx, dy in candidates:
            text.xyann = (dx, dy)
            text.set_ha("left" if dx > 0 else "right")
            box = text.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                break
        else:
            text.xyann, ha = first
            text.set_ha(ha)
            box = text.get_window_extent(renderer)
        placed.append(box)


def _hist_plot(hists: list[tuple[str, list[float], dict[str, np.ndarray], Any]], prefix: str) -> str:
    """Small multiples: per method, the forget (filled) and validation (line) loss distributions."""
    ncols = min(4, len(hists))
    nrows = -(-len(hists) // ncols)
    fig = _figure(3.1 * ncols + 0.4, 2.2 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    for ax in axes.flat[len(hists) :]:
        ax.set_visible(False)
    for ax, (name, edges, sums, color) in zip(axes.flat, hists, strict=False):
        for split, style in (("forget", {"fill": True, "alpha": 0.55}), ("val", {"fill": False, "lw": 1.4})):
            counts = sums.get(split)
            if counts is None or counts.sum() == 0:
                continue
            frac = counts / counts.sum()
            ax.stairs(frac, edges, color=color if split == "forget" else "#24292f", label=split, **style)
        ax.set_xscale("log")
        ax.set_title(_mpl_text(name), fontsize=9)
        ax.grid(True, alpha=0.25)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("loss −log p[y]", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of samples", fontsize=8)
    axes.flat[0].legend(fontsize=7, frameon=False, loc="upper left")
    return _svg(fig, prefix)


def _roc_plot(rocs: list[tuple[str, dict[str, Any], Any]], prefix: str) -> str:
    """Mean ROC curve per method, the chance diagonal, the AUC in the legend."""
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#8c959f", lw=1, ls=":", label="chance (AUC 0.5)")
    for name, roc, color in rocs:
        aucs = roc["auc"]
        auc = f"{np.mean(aucs):.3f}" + (f" ± {np.std(aucs):.3f}" if len(aucs) > 1 else "")
        ax.plot(roc["fpr"], roc["tpr"], color=color, lw=1.5, label=_mpl_text(f"{name} (AUC {auc})"))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false-positive rate (non-members called members)")
    ax.set_ylabel("true-positive rate (forget set found)")
    ax.set_title("loss-threshold membership attack on the forget set", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _svg(fig, prefix)


# ---------------------------------------------------------------------------------------------- html
def _table(rows: list[dict[str, Any]], runs_by_key: dict[tuple[str, str], list[dict[str, Any]]], scenario: str) -> str:
    cols = [c for c in REPORT_COLUMNS if any(r.get(c) is not None for r in rows)]
    statuses = list(STATUS_COLUMNS)
    if any(rr.get("status") == "unchecked" for runs in runs_by_key.values() for rr in runs):
        statuses.insert(2, "unchecked")
    notes: list[str] = []
    head = ['<th scope="col">method</th>', '<th scope="col">runs</th>']
    head += [
        f'<th scope="col" class="{"group-start" if i == 0 else ""}" data-column="{_e(c)}">{_e(_HEADERS.get(c, c))}</th>'
        for i, c in enumerate(cols)
    ]
    head += [
        f'<th scope="col" class="status{" group-start" if i == 0 else ""}" data-status="{s}">{s}</th>'
        for i, s in enumerate(statuses)
    ]
    body = []
    for row in rows:
        runs = runs_by_key[(row["scenario"], row["method"])]
        marks = []
        for r in runs:
            texts = list(r.get("notes") or [])
            if r.get("error"):
                texts.append(f"{r.get('status', 'failed')} (seed {r.get('seed')}): {r['error']}")
            for t in texts:
                if t not in notes:
                    notes.append(t)
                mark = notes.index(t) + 1
                if mark not in marks:
                    marks.append(mark)
        sup = "".join(f'<sup class="note">[{m}]</sup>' for m in marks)
        name = _display(row, scenario)
        cells = [f'<th scope="row">{_e(name)}{sup}</th>', f"<td>{len(runs)}</td>"]
        for i, c in enumerate(cols):
            cls = ' class="group-start"' if i == 0 else ""
            cells.append(f'<td{cls} data-column="{_e(c)}">{_e(format_cell(c, row.get(c)))}</td>')
        for i, s in enumerate(statuses):
            n = sum(1 for r in runs if r.get("status", "ok") == s)
            cls = (
                "status" + (" group-start" if i == 0 else "") + (" nonzero" if n else "") + (" bad" if s in _BAD_STATUSES else "")
            )
            cells.append(f'<td class="{cls}" data-status="{s}">{n}</td>')
        body.append(f'<tr data-method="{_e(name)}">' + "".join(cells) + "</tr>")
    out = [
        '<table class="metrics">',
        "<thead><tr>" + "".join(head) + "</tr></thead>",
        "<tbody>",
        *body,
        "</tbody></table>",
    ]
    if notes:
        out.append('<ol class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ol>")
    return "\n".join(out)


def _pool_table(runs: list[dict[str, Any]]) -> str:
    header, rows = pool_rows(runs)
    n = max(((r.get("members") or {}).get("n") or 0) for r in runs)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(f'<tr data-method="{_e(row[0])}">' + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f'<h3>Per-example metrics over pools of {n} models</h3><div class="table-wrap"><table class="pool" data-table="pool">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        "<p class=\"note\">One forget draw, originals over the pool's seeds. ε-score (the NeurIPS 2023 challenge's): higher "
        "is better, 1 = indistinguishable from retraining; <em>F floor</em> is the F of two independent retrained pools "
        "of this size (what exact retraining scores by chance), and KLOM's <em>floor</em> likewise. "
        "U-LiRA: 0.5 AUC and low TPR at low FPR are ideal. "
        "KLOM (nats): lower is better. Accuracies in %.</p>"
    )


def _section(
    index: int, dataset: str, scenario: str, runs: list[dict[str, Any]], pools: list[dict[str, Any]] | None = None
) -> str:
    rows = aggregate(runs, REPORT_COLUMNS)
    runs_by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        runs_by_key.setdefault(_row_key(r), []).append(r)
    names = [_display(row, scenario) for row in rows]
    colors = dict(zip(names, _colors(len(names)), strict=True))
    seeds = sorted({r.get("seed") for r in runs if r.get("seed") is not None})
    sid = f"scenario-{index}"
    parts = [
        f'<section class="scenario" id="{sid}" data-dataset="{_e(dataset)}" data-scenario="{_e(scenario)}">',
        f"<h2>{_e(dataset)} · {_e(scenario)} <small>({len(seeds)} seed{'s' if len(seeds) != 1 else ''}, "
        f"{len(runs)} runs)</small></h2>",
        _table(rows, runs_by_key, scenario),
        _pool_table(pools) if pools else "",
        '<div class="plots">',
    ]
    points = []
    for row, name in zip(rows, names, strict=True):
        sec, gap = row.get("seconds"), row.get("avg_gap")
        if sec is not None and gap is not None and sec[0] > 0:
            points.append((name, sec[0], gap[0], colors[name]))
    if points:
        parts.append(
            f'<figure class="plot" data-plot="pareto" id="{sid}-pareto">{_pareto_plot(points, f"{sid}-pareto")}'
            "<figcaption>Mean seconds against mean avg gap to the retrained oracle; the dashed step line is the "
            "Pareto front (no other method is both faster and closer to the oracle). Methods without a time or a gap "
            "(the original model) are left out.</figcaption></figure>"
        )
    hists, rocs = [], []
    for row, name in zip(rows, names, strict=True):
        method_runs = runs_by_key[(row["scenario"], row["method"])]
        h = _loss_hist(method_runs)
        if h is not None:
            hists.append((name, h[0], h[1], colors[name]))
        roc = _roc(method_runs)
        if roc is not None:
            rocs.append((name, roc, colors[name]))
    if rocs:
        nonmembers = ", ".join(sorted(set().union(*(r["nonmembers"] for _, r, _ in rocs))))
        parts.append(
            f'<figure class="plot" data-plot="mia-roc" id="{sid}-roc">{_roc_plot(rocs, f"{sid}-roc")}'
            f"<figcaption>ROC of the attack that calls a sample a member when its loss is low: forget set (members) "
            f"against {_e(nonmembers)} (non-members); TPR averaged over seeds. An unlearned model should sit near "
            "the oracle's curve.</figcaption></figure>"
        )
    if hists:
        parts.append(
            f'<figure class="plot" data-plot="loss-hist" id="{sid}-loss">{_hist_plot(hists, f"{sid}-loss")}'
            "<figcaption>Per-sample loss on the forget set (filled) and the validation set (line), summed over seeds, "
            "as fractions of samples; losses below 1e-6 are counted in the first bin.</figcaption></figure>"
        )
    if not (points or hists or rocs):
        parts.append('<p class="empty">No run of this scenario has timings, gaps or curves to plot.</p>')
    elif not (hists or rocs):
        parts.append('<p class="empty">No run of this scenario recorded curves (loss histograms, ROC).</p>')
    parts += ["</div>", "</section>"]
    return "\n".join(parts)


def html_report(records: Sequence[dict[str, Any]], *, title: str = "obliviate bench report") -> str:
    """The report of bench run records as one self-contained HTML page (no network loads, no script).

    Args:
        records: Run records (``ResultStore(dir).records()``), with ``curves`` where the runner stored them.
        title: The page's title and heading.

    Returns:
        The HTML text (UTF-8).
    """
    classic, pool_records = split_records(records)
    groups = group_records(classic)
    pool_groups = group_records(pool_records)
    specs = sorted({str((r.get("bench") or {}).get("spec")) for r in records if (r.get("bench") or {}).get("spec")})
    summary = f"{len(records)} runs, {len(groups)} scenario{'s' if len(groups) != 1 else ''}"
    if specs:
        summary = f"Spec {', '.join(specs)}: {summary}"
    nav = "".join(
        f'<li><a href="#scenario-{i}">{_e(dataset)} · {_e(scenario)}</a></li>' for i, (dataset, scenario) in enumerate(groups, 1)
    )
    sections = [
        _section(i, dataset, scenario, runs, pool_groups.get((dataset, scenario)))
        for i, ((dataset, scenario), runs) in enumerate(groups.items(), 1)
    ]
    prov = []
    for line in _provenance(records):
        name, _, value = line.removeprefix("- ").partition(": ")
        prov.append(f"<li><strong>{_e(name)}</strong>: {_e(value)}</li>")
    footer = ""
    if prov:
        footer = '<footer><section id="provenance"><h2>Provenance</h2><ul>' + "".join(prov) + "</ul></section></footer>"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            "<header>",
            f"<h1>{_e(title)}</h1>",
            f'<p class="summary">{_e(summary)}.</p>',
            '<p class="lead">Mean ± std over seeds; accuracies, MIA and avg gap in %. <em>avg gap</em> is the mean '
            "absolute difference to the retrained oracle of the same seed (0 for the oracle, <em>retrain</em>, itself); "
            "<em>original</em> is the model before unlearning. The status columns count each method's runs.</p>",
            f"<nav><ul>{nav}</ul></nav>",
            "</header>",
            "<main>",
            *sections,
            "</main>",
            footer,
            "</body>",
            "</html>",
            "",
        ]
    )
