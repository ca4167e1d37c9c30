"""``qcgflow report gantt|gantt-gaps WD OUT``: timelines of the cores, drawn with matplotlib.

::

    Run -> busy intervals per core -> one PolyCollection of rectangles (one artist for all
    bars: thousands of tasks draw in well under a second) -> Figure.savefig(OUT)

``gantt``: one row per core, each task a bar on every core it held, coloured by job; a
task that did not succeed (FAILED, CANCELED) is hatched and outlined in black, and the
title counts them.
``gantt-gaps``: the negative: tasks in light grey, the time each core stood idle between
the service's start and finish in red.

matplotlib is imported here only, when a plot is asked for (``pip install
qcgflow[reports]``); the service never imports this module. No pyplot and no global
backend: a bare ``Figure`` renders straight to the file.
"""

import os
from typing import Dict, List, Sequence, Tuple

from ..errors import RuntimeLayerError
from .metrics import all_cores, busy_intervals
from .workdir import Run

FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg", ".jpg": "jpeg", ".jpeg": "jpeg"}
GAP_COLOUR = "#d62728"
TASK_GREY = "#c8c8c8"
FAILED_HATCH = "////"
_LABEL_EACH_ROW_UP_TO = 64


class PlotError(RuntimeLayerError):
    """The plot cannot be made (format, missing matplotlib); the message says the fix."""


def plot_format(out: str) -> str:
    """The output format named by ``out``'s extension.

    Raises:
        PlotError: an extension that is not .png, .pdf, .svg, .jpg or .jpeg.
    """
    ext = os.path.splitext(out)[1].lower()
    if ext not in FORMATS:
        raise PlotError("%s: unknown plot format '%s' (use .png, .pdf, .svg or .jpg)"
                        % (out, ext or "no extension"))
    return FORMATS[ext]


def plot(run: Run, out: str, gaps: bool = False) -> int:
    """Draw the Gantt chart (or its gaps) of ``run`` into ``out``; returns the bar count."""
    fmt = plot_format(out)
    try:
        import matplotlib
        from matplotlib.collections import PolyCollection
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError as exc:
        raise PlotError("plots need matplotlib: pip install 'qcgflow[reports]' (%s)"
                        % exc) from exc
    busy = busy_intervals(run)
    cores = all_cores(run, busy)
    rows = {core: index for index, core in enumerate(cores)}
    origin = run.service_started
    if origin is None:
        origin = min((t.start for t in run.tasks if t.ran), default=0.0)
    horizon = _horizon(run, busy, origin)

    jobs = _job_order(run)
    palette = _palette(matplotlib, len(jobs))
    task_bars, task_colours, failed_bars = [], [], []
    for task in run.tasks:
        if not task.ran:
            continue
        colour = TASK_GREY if gaps else palette[jobs[task.job]]
        for core in task.cores:
            bar = (task.start - origin, max(task.end, task.start) - origin, rows[core])
            task_bars.append(bar)
            task_colours.append(colour)
            if task.state != "SUCCEED":  # at least a sliver wide: a quick failure shows
                failed_bars.append((bar[0], max(bar[1], bar[0] + 0.004 * horizon), bar[2]))
    gap_bars = _gaps(busy, cores, rows, origin, horizon) if gaps else []

    height = min(max(3.0, 0.16 * len(cores) + 1.6), 60.0)
    fig = Figure(figsize=(12, height), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    edges = 0.3 if len(task_bars) <= 4000 else 0.0
    ax.add_collection(PolyCollection(_rectangles(task_bars), facecolors=task_colours,
                                     edgecolors="white" if edges else "none", linewidths=edges))
    if failed_bars:  # drawn over their bars: the job's colour shows through the hatching
        ax.add_collection(PolyCollection(_rectangles(failed_bars), facecolors="none",
                                         edgecolors="black", linewidths=0.8,
                                         hatch=FAILED_HATCH))
    if gap_bars:
        ax.add_collection(PolyCollection(_rectangles(gap_bars), facecolors=GAP_COLOUR,
                                         edgecolors="none", alpha=0.85))
    ax.set_xlim(0.0, max(horizon, 1e-3) * 1.02)  # room for the dashed finish line
    ax.set_ylim(len(cores) - 0.5, -0.5)  # first core on top
    ax.set_xlabel("seconds since the service started")
    _label_rows(ax, run, cores)
    if run.runtime is not None:
        ax.axvline(run.runtime, color="black", linewidth=0.8, linestyle="--")
    ax.grid(axis="x", linestyle=":", linewidth=0.5)
    ax.set_title(_title(run, len(task_bars), len(cores), gaps, gap_bars), fontsize=10)
    failed_patch = [Patch(facecolor="white", edgecolor="black", hatch=FAILED_HATCH,
                          label="not succeeded")] if failed_bars else []
    if gaps:
        ax.legend(handles=[Patch(color=TASK_GREY, label="task"),
                           Patch(color=GAP_COLOUR, label="idle core")] + failed_patch,
                  loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    elif 0 < len(jobs) <= 20 or failed_patch:
        handles = [Patch(color=palette[i], label=name) for name, i in jobs.items()] \
            if len(jobs) <= 20 else []
        ax.legend(handles=handles + failed_patch, loc="upper left",
                  bbox_to_anchor=(1.0, 1.0), fontsize=8, title="jobs")
    fig.tight_layout()
    fig.savefig(out, format=fmt)
    return len(task_bars) + len(gap_bars)


def _horizon(run: Run, busy, origin: float) -> float:
    last = max((spans[-1][1] for spans in busy.values()), default=origin)
    end = run.service_finished if run.service_finished is not None else last
    return max(end, last) - origin


def _job_order(run: Run) -> Dict[str, int]:
    jobs: Dict[str, int] = {}
    for task in run.tasks:
        if task.ran and task.job not in jobs:
            jobs[task.job] = len(jobs)
    return jobs


def _palette(matplotlib, count: int) -> List:
    """Distinct colours for few jobs (tab10, tab20), a continuous map for many."""
    if count <= 20:
        colours = matplotlib.colormaps["tab10" if count <= 10 else "tab20"].colors
        return list(colours[:count])
    cmap = matplotlib.colormaps["turbo"]
    return [cmap(i / (count - 1)) for i in range(count)]


def _gaps(busy, cores, rows, origin: float, horizon: float) -> List[Tuple[float, float, int]]:
    bars = []
    for core in cores:
        cursor = 0.0
        for start, end in busy.get(core, ()):
            if start - origin > cursor:
                bars.append((cursor, start - origin, rows[core]))
            cursor = max(cursor, end - origin)
        if cursor < horizon:
            bars.append((cursor, horizon, rows[core]))
    return bars


def _rectangles(bars: Sequence[Tuple[float, float, int]], thickness: float = 0.8):
    half = thickness / 2.0
    return [((a, r - half), (a, r + half), (b, r + half), (b, r - half)) for a, b, r in bars]


def _label_rows(ax, run: Run, cores) -> None:
    if len(cores) <= _LABEL_EACH_ROW_UP_TO:
        ax.set_yticks(range(len(cores)))
        ax.set_yticklabels(["%s:%d" % core for core in cores], fontsize=7)
    else:  # one label per node, in the middle of its rows
        spans: Dict[str, List[int]] = {}
        for index, (node, _) in enumerate(cores):
            spans.setdefault(node, []).append(index)
        ax.set_yticks([(rows[0] + rows[-1]) / 2.0 for rows in spans.values()])
        ax.set_yticklabels(list(spans), fontsize=7)
    ax.set_ylabel("cores (node:core)")
    previous = None
    for index, (node, _) in enumerate(cores):
        if previous is not None and node != previous:
            ax.axhline(index - 0.5, color="black", linewidth=0.6)
        previous = node


def _title(run: Run, bars: int, cores: int, gaps: bool, gap_bars) -> str:
    ran = sum(1 for t in run.tasks if t.ran)
    what = "idle cores" if gaps else "tasks"
    text = "%s: %d tasks on %d cores (%d node%s)" % (what, ran, cores, run.total_nodes,
                                                     "" if run.total_nodes == 1 else "s")
    failed = sum(1 for t in run.tasks if t.ran and t.state != "SUCCEED")
    if failed:
        text += ", %d not succeeded (hatched)" % failed
    if run.runtime is not None:
        text += ", service runtime %.2f s" % run.runtime
    if gaps:
        idle = sum(b - a for a, b, _ in gap_bars)
        text += ", idle core-seconds %.1f" % idle
    if not run.has_rtstats:
        text += " (times from jobs.report; --enable-rt-stats gives exact ones)"
    return text
