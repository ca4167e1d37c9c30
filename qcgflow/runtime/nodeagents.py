"""Slurm mode's launching: node agents (default) or one ``srun`` per task (--disable-nl).

::

    Service.setup (Slurm mode) -> make_slurm_launcher
        --disable-nl: SrunLauncher(LocalLauncher)
        default:      AgentLauncher; every node disabled in the pool, the manager paused
                      agent registers -> pool.enable(node) -> ready >= threshold: resume
                      --nl-init-timeout passes first -> on_failure(message): the service
                      stops without starting the workflow
                      agent lost -> pool.disable(node), its tasks FAILED with the cause
                      agent terminated by Slurm (allocation end) -> its tasks CANCELED
                      "interrupted: ...", journaled to run again on --resume

Guarantees: no job starts before ``ceil(threshold x nodes)`` agents (at least one) have
registered; jobs only ever start on nodes whose agent is registered; agents that register
after the start enable their nodes then; when every agent is lost the service stops
(``on_failure``) instead of waiting for nodes that will not come back. When every lost
agent had been signalled by Slurm first (the allocation is ending or was canceled),
``allocation_ended`` is True and the message says so: the stop is an interruption, not a
failure to start.
"""

import logging
import math
import os
import signal
from typing import Callable, Dict, Optional

from .launch.agents import AgentLauncher
from .launch.local import LocalLauncher
from .launch.srun import SrunLauncher

_log = logging.getLogger(__name__)


class AgentReadiness:
    """Keeps the pool and the manager in step with the agents' registrations."""

    def __init__(self, loop, manager, nodes, threshold: float, init_timeout: float,
                 on_failure: Callable[[str], None]):
        self._loop = loop
        self._manager = manager
        self._nodes = list(nodes)
        self._needed = max(1, math.ceil(threshold * len(self._nodes) - 1e-9))
        self._ready = set()
        self._started = False
        self._init_timeout = init_timeout
        self._on_failure = on_failure
        self._timer = None
        self._failed = False
        self.lost: Dict[str, str] = {}
        self.terminated: set = set()  # nodes whose agent Slurm signalled (allocation end)
        self.jobs_started = False  # the workflow was let run (some agents registered)
        self.allocation_ended = False  # the stop was the allocation's end (see module doc)
        self.signum: Optional[int] = None  # the signal Slurm sent the agents

    def begin(self) -> None:
        for node in self._nodes:
            self._manager.disable_node(node)
        self._manager.pause()
        self._timer = self._loop.call_later(self._init_timeout, self._timed_out)

    def node_up(self, node: str) -> None:
        self._ready.add(node)
        self.lost.pop(node, None)
        self._manager.enable_node(node)
        if not self._started and len(self._ready) >= self._needed:
            self._started = True
            if self._timer is not None:
                self._timer.cancel()
            self.jobs_started = True
            _log.info("%d of %d node agents ready: starting jobs", len(self._ready),
                      len(self._nodes))
            self._manager.resume()
        else:
            self._manager.kick()

    def node_lost(self, node: str, why: str) -> None:
        self._ready.discard(node)
        self.lost[node] = why
        self._manager.disable_node(node)
        if not self._started and len(self._nodes) - len(self.lost) < self._needed:
            self._fail("only %d of the %d node agents needed can still start (%s)"
                       % (len(self._nodes) - len(self.lost), self._needed, why))
        elif self._started and not self._ready and len(self.lost) == len(self._nodes):
            # No node can run anything any more: queued work would wait forever.
            if self.terminated >= set(self._nodes):
                # Slurm signalled them all: the allocation ends (time limit, scancel).
                self.allocation_ended = True
                self._fail(self.ending_message())
            else:
                self._fail("every node agent is lost (the last: %s)" % why)

    def node_terminating(self, node: str, signum: Optional[int] = None) -> None:
        """The node's agent was signalled by Slurm (it said so, or its srun died of it)."""
        self.terminated.add(node)
        if signum is not None:
            self.signum = signum

    def ending_message(self) -> str:
        """What to say when Slurm signalled the agents (``terminated`` is not empty)."""
        every = self.terminated >= set(self._nodes)
        return ("the allocation is ending: Slurm sent %s %s (time limit or scancel); "
                "interrupted and queued work is journaled for --resume"
                % ("every node agent" if every else "the node agents on %s"
                   % ",".join(sorted(self.terminated)), self._signal_name()))

    def _signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name if self.signum else "a termination signal"
        except ValueError:
            return "signal %s" % self.signum

    def _timed_out(self) -> None:
        if not self._started:
            self._fail("%d of %d node agents registered within --nl-init-timeout %gs (%d "
                       "needed)%s" % (len(self._ready), len(self._nodes), self._init_timeout,
                                      self._needed, _first(self.lost)))

    def _fail(self, message: str) -> None:
        if self._failed:
            return  # the first reason is the one to report
        self._failed = True
        if self._timer is not None:
            self._timer.cancel()
        self._started = True  # nothing more to wait for
        self._on_failure(message)


def _first(lost: Dict[str, str]) -> str:
    return "; %s" % next(iter(lost.values())) if lost else ""


def make_slurm_launcher(loop, manager, config, aux_dir: str, wd: str,
                        task_env: Dict[str, str], on_failure: Callable[[str], None],
                        on_node_terminating: Callable[[str], None] = lambda node: None):
    """The launcher for Slurm mode; returns ``(launcher, readiness or None)``."""
    nodes = [name for name, _ in manager.node_cores()]
    if config.disable_nl:
        _log.info("node agents disabled: one srun per task")
        return SrunLauncher(LocalLauncher(loop)), None
    readiness: Optional[AgentReadiness] = None
    launcher = AgentLauncher(
        loop, nodes, os.path.join(aux_dir, "agents"), wd, task_env,
        start_method=config.nl_start_method or "slurm", log_dir=aux_dir,
        on_node_up=lambda node: readiness.node_up(node),
        on_node_lost=lambda node, why: readiness.node_lost(node, why),
        on_node_terminating=lambda node, signum=None: _terminating(node, signum))
    readiness = AgentReadiness(loop, manager, nodes, config.nl_ready_threshold,
                               config.nl_init_timeout, on_failure)

    def _terminating(node: str, signum: Optional[int]) -> None:
        readiness.node_terminating(node, signum)
        on_node_terminating(node)

    readiness.begin()
    launcher.start()
    return launcher, readiness
