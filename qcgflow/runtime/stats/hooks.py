"""The service's optional statistics, attached by the composition root (service.py).

``ServiceStats.attach`` wires what the options ask for; ``close`` (called when the service
stops, before final_status.json is written) flushes and stops all of it. Nothing here is
imported or started when no statistics option is given, apart from this small module.
"""

import logging
import os
from typing import Optional

from .progress import ProgressPrinter
from .rtstats import RTSTATS_FILE, RtStatsRecorder

_log = logging.getLogger(__name__)


class ServiceStats:
    """The statistics collectors of one service run (each one optional)."""

    def __init__(self):
        self.recorder: Optional[RtStatsRecorder] = None
        self.sampler = None
        self.progress: Optional[ProgressPrinter] = None

    @classmethod
    def attach(cls, config, loop, manager, aux_dir: str) -> "ServiceStats":
        """Create and start the collectors that ``config`` enables.

        Args:
            config: the ``ServiceConfig``.
            loop: the service's event loop.
            manager: the ``Manager`` (its executor must already be set).
            aux_dir: the service's working-files directory.
        """
        stats = cls()
        if config.wrapper_rt_stats:
            _log.info("--wrapper-rt-stats %s ignored: the qcgflow launcher records exact "
                      "start and finish times itself, no wrapper is needed",
                      config.wrapper_rt_stats)
        if config.enable_rt_stats:
            path = os.path.join(aux_dir, RTSTATS_FILE)
            stats.recorder = RtStatsRecorder(path, loop, manager.node_cores())
            manager.executor.exit_listeners.append(stats.recorder)
            _log.info("exact start/finish times of tasks recorded in %s", path)
        if config.enable_proc_stats:
            from .procstats import ProcessSampler  # psutil: only when asked for
            stats.sampler = ProcessSampler(aux_dir)
            stats.sampler.start()
            _log.info("process statistics: sampling launched processes every second")
        if config.show_progress:
            stats.progress = ProgressPrinter(loop, manager)
            stats.progress.start()
        return stats

    def close(self) -> None:
        """Stop the collectors and write what they hold (each one at most once)."""
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
        if self.sampler is not None:
            try:
                self.sampler.close()
            except OSError as exc:
                _log.error("cannot write the process statistics: %s", exc)
            self.sampler = None
