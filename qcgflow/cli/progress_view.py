"""How ``qcgflow run`` shows progress: a live bar on a terminal, plain lines otherwise.

``make_view(total, live, stream)`` returns an object with ``show(done, counts, elapsed)``
(called every fraction of a second on a terminal, every ``--interval`` seconds otherwise)
and ``close()``. On a terminal the display is a rich progress bar (tasks done of all, the
tasks per final state, rate, elapsed, remaining); rich is imported only then, so runs in
pipes and batch jobs do not pay for it. Without a terminal each call prints one line such
as ``  12.0s  800/2000 tasks done  (succeed 799, failed 1)  66.7/s, ETA 18s``.
"""

import sys
from typing import Dict, TextIO


def plain_line(done: int, total: int, counts: Dict[str, int], elapsed: float) -> str:
    """The one-line form of the progress (also the last line of a live display)."""
    text = "%6.1fs  %d/%d tasks done" % (elapsed, done, total)
    if counts:
        text += "  (%s)" % ", ".join("%s %d" % (s.lower(), n) for s, n in counts.items())
    if 0 < done < total and elapsed > 0:
        text += "  %.1f/s, ETA %.0fs" % (done / elapsed, elapsed / done * (total - done))
    return text


class PlainView:
    """Periodic lines, for logs and pipes."""

    def __init__(self, total: int, stream: TextIO):
        self._total = total
        self._stream = stream

    def show(self, done: int, counts: Dict[str, int], elapsed: float) -> None:
        print(plain_line(done, self._total, counts, elapsed), file=self._stream, flush=True)

    def close(self) -> None:
        pass


class LiveView:
    """A rich progress bar redrawn in place (terminals only)."""

    def __init__(self, total: int, stream: TextIO):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        self._progress = Progress(
            TextColumn("[bold]tasks"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[states]}"), TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=Console(file=stream), transient=False, auto_refresh=False)
        self._task = self._progress.add_task("run", total=total, states="", rate="")
        self._progress.start()

    def show(self, done: int, counts: Dict[str, int], elapsed: float) -> None:
        states = ", ".join("%s %d" % (s.lower(), n) for s, n in counts.items())
        rate = "%.1f/s" % (done / elapsed) if elapsed > 0 and done else ""
        self._progress.update(self._task, completed=done, states=states, rate=rate)
        self._progress.refresh()

    def close(self) -> None:
        self._progress.stop()


def make_view(total: int, live: bool, stream: TextIO = sys.stderr):
    """A LiveView when ``live`` (stderr is a terminal and not --quiet), else a PlainView."""
    return LiveView(total, stream) if live else PlainView(total, stream)
