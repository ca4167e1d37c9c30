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
import textwrap
import time
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import RuntimeLayerError
from .metrics import all_cores, busy_intervals
from .workdir import Run

FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg", ".jpg": "jpeg", ".jpeg": "jpeg"}
GAP_COLOUR = "#d62728"
TASK_GREY = "#c8c8c8"
FAILED_HATCH = "////"
_LABEL_EACH_ROW_UP_TO = 64
_MAX_BAR_LABELS = 500  # texts are one artist each (~1 ms): more is a dense chart anyway


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
    windows = _windows(run, origin, horizon)
    gap_bars = _gaps(busy, cores, rows, origin, windows) if gaps else []

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
    if run.runtime is not None and not run.partial:
        ax.axvline(run.runtime, color="black", linewidth=0.8, linestyle="--")
    _mark_parts(ax, windows)
    ax.grid(axis="x", linestyle=":", linewidth=0.5)
    if not gaps:
        _label_bars(ax, run, rows, origin, horizon, len(cores), height)
    ax.set_title(_title(run, len(task_bars), len(cores), gaps, gap_bars), fontsize=10)
    failed_patch = [Patch(facecolor="white", edgecolor="black", hatch=FAILED_HATCH,
                          label="not succeeded")] if failed_bars else []
    if gaps:
        ax.legend(handles=[Patch(color=TASK_GREY, label="task"),
                           Patch(color=GAP_COLOUR, label="idle core")] + failed_patch,
                  loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    elif 0 < len(jobs) <= 20 or failed_patch:
        handles = [Patch(color=palette[i], label=_legend_label(run, name))
                   for name, i in jobs.items()] if len(jobs) <= 20 else []
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


def _windows(run: Run, origin: float, horizon: float) -> List[Tuple[float, float]]:
    """The spans the service ran (one per part: allocation or --resume), chart seconds."""
    parts = run.parts or ()
    if len(parts) <= 1:
        return [(0.0, horizon)]
    return [(p.started - origin,
             (p.finished if p.finished is not None else origin + horizon) - origin)
            for p in parts]


def _gaps(busy, cores, rows, origin: float,
          windows: Sequence[Tuple[float, float]]) -> List[Tuple[float, float, int]]:
    """Idle stretches of each core inside the service's windows: the time between two
    allocations is no core's idle time (there was no allocation)."""
    bars = []
    for core in cores:
        spans = [(a - origin, b - origin) for a, b in busy.get(core, ())]
        for low, high in windows:
            cursor = low
            for start, end in spans:
                if end <= low or start >= high:
                    continue
                if start > cursor:
                    bars.append((cursor, start, rows[core]))
                cursor = max(cursor, end)
            if cursor < high:
                bars.append((cursor, high, rows[core]))
    return bars


def _mark_parts(ax, windows: Sequence[Tuple[float, float]]) -> None:
    """A resumed run's allocations: a solid line where each later one began, the time
    between them shaded, each labelled at the top."""
    if len(windows) <= 1:
        return
    for number, (start, end) in enumerate(windows, 1):
        if number > 1:
            previous_end = windows[number - 2][1]
            if start > previous_end:
                ax.axvspan(previous_end, start, color="#eeeeee", zorder=0)
            ax.axvline(start, color="#1f3b73", linewidth=1.4)
        ax.axvline(end, color="#1f3b73", linewidth=0.8, linestyle="--")
        ax.annotate("run %d%s" % (number, " (--resume)" if number > 1 else ""),
                    xy=(start, 0.0), xycoords=("data", "axes fraction"),
                    xytext=(3, 3), textcoords="offset points", fontsize=7,
                    color="#1f3b73", va="bottom")


def _iteration(task) -> Optional[int]:
    if task.name == task.job or ":" not in task.name:
        return None
    index = task.name.rsplit(":", 1)[1]
    return int(index) if index.lstrip("-").isdigit() else None


def _bar_label(run: Run, task) -> Optional[str]:
    """A sweep member's value (from the journal's submission), else its iteration index."""
    index = _iteration(task)
    if index is None:
        return None
    values = run.labels.get(task.job)
    if values and 0 <= index < len(values):
        return values[index]
    return str(index)


def _label_bars(ax, run: Run, rows, origin: float, horizon: float, cores: int,
                height: float) -> None:
    """Each sweep member's label on its bar (first core it held), where the text fits the
    bar: the figure is 12 in at 100 dpi, about 80 % of it the plot."""
    row_px = 0.8 * height * 100 * 0.8 / max(cores, 1)
    if row_px < 8 or horizon <= 0:
        return
    seconds_px = 1200 * 0.78 / (horizon * 1.02)
    size = 6.5 if row_px >= 11 else 5.5
    fitting = []
    for task in run.tasks:
        if not task.ran or not task.cores:
            continue
        text = _bar_label(run, task)
        if text is None:
            continue
        width = (max(task.end, task.start) - task.start) * seconds_px
        if width >= 0.62 * size * len(text) + 4:  # else the legend and colour say the job
            fitting.append((task, text))
    if len(fitting) > _MAX_BAR_LABELS:
        return  # all or none: a chart with some bars labelled would look inconsistent
    for task, text in fitting:
        ax.text((task.start + max(task.end, task.start)) / 2.0 - origin, rows[task.cores[0]],
                text, ha="center", va="center", fontsize=size, clip_on=True, zorder=4)


def _legend_label(run: Run, job: str) -> str:
    """The job's name, with its iteration count and the first values of a sweep."""
    members = len({t.name for t in run.tasks if t.job == job and _iteration(t) is not None})
    if not members:
        return job
    values = run.labels.get(job)
    if not values:
        return "%s (%d iterations)" % (job, members)
    shown = ", ".join(values[:3]) + (", ..." if len(values) > 3 else "")
    return "%s (%d iterations: %s)" % (job, len(values), shown)


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
    if len(run.parts or ()) > 1:
        text += ", %d runs (first + %d --resume)" % (len(run.parts), len(run.parts) - 1)
    if run.partial:  # a second line on top: the chart is not the run's final picture
        text = "PARTIAL: %s (drawn %s; running tasks are not shown)\n%s" % (
            run.partial, time.strftime("%Y-%m-%d %H:%M:%S"), text)
    failed = sum(1 for t in run.tasks if t.ran and t.state != "SUCCEED")
    if failed:
        text += ", %d not succeeded (hatched)" % failed
    if run.runtime is not None and not run.partial:
        text += ", service runtime %.2f s" % run.runtime
    if gaps:
        idle = sum(b - a for a, b, _ in gap_bars)
        text += ", idle core-seconds %.1f" % idle
    if not run.has_rtstats:
        text += " (times from jobs.report; --enable-rt-stats gives exact ones)"
    # the title is centred over the plot (12 in less the legend, 10 pt): wrap longer lines
    return "\n".join(textwrap.fill(line, 115, break_on_hyphens=False)
                     for line in text.split("\n"))
