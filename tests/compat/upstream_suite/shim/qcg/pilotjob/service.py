"""``qcg.pilotjob.service`` for upstream's tests: both classes start ``qcgflow service``.

``QCGPMService(args)`` keeps the arguments (``sys.argv[1:]`` when none are given, as upstream)
and ``start()`` runs the service with them in a child process until it ends, like upstream's
blocking ``start()``; ``exit_code`` is the service's exit status.

``QCGPMServiceProcess(args, queue)`` is a ``multiprocessing.Process`` whose ``run()`` starts
the service, reads the address the service itself reports on its ready line (``--ready-fd``,
whatever transport it chose) and puts ``{'zmq_addresses': [address]}`` on the queue, as
upstream does, or ``{'error': text}`` when the service did not start. ``terminate()`` of the
process stops the service too (SIGTERM is passed on, then SIGKILL after a grace period).
"""

import json
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import time

READY_TIMEOUT = 60.0
STOP_GRACE = 10  # seconds from SIGTERM to SIGKILL of the service


def _command(args):
    return [sys.executable, "-m", "qcgflow.cli", "service", *[str(arg) for arg in args]]


class QCGPMService:
    """The manager service with upstream's command-line arguments, run to its end."""

    def __init__(self, args=None):
        self.args = list(sys.argv[1:] if args is None else args)
        self.exit_code = 1

    def start(self):
        """Run ``qcgflow service`` with the arguments and wait for it to finish."""
        self.exit_code = subprocess.call(_command(self.args))
        return self.exit_code


def _read_line(fd, proc, timeout):
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None and not select.select([fd], [], [], 0)[0]:
            break
        if select.select([fd], [], [], min(left, 0.5))[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\n", 1)[0].strip()


class QCGPMServiceProcess(multiprocessing.Process):
    """A process that runs ``qcgflow service`` and reports its address on ``queue``."""

    def __init__(self, args=None, queue=None):
        super().__init__()
        # daemonic: a test that fails before its terminate() must not leave pytest waiting at
        # exit for a service nobody stops (multiprocessing terminates daemonic children)
        self.daemon = True
        self.args = list(args or [])
        self.queue = queue

    def run(self):
        read_fd, write_fd = os.pipe()
        proc = subprocess.Popen(_command(self.args + ["--ready-fd", str(write_fd)]),
                                pass_fds=(write_fd,))
        os.close(write_fd)

        # Signal handlers only send signals: the main thread may be inside proc.wait()
        # (holding Popen's lock), so a handler that waited too would deadlock.
        def kill(_signum=None, _frame=None):
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except OSError:
                pass

        def forward(_signum=None, _frame=None):
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except OSError:
                pass
            signal.signal(signal.SIGALRM, kill)
            signal.alarm(STOP_GRACE)

        signal.signal(signal.SIGTERM, forward)
        line = _read_line(read_fd, proc, READY_TIMEOUT)
        os.close(read_fd)
        try:
            address = json.loads(line).get("address") if line else None
        except ValueError:
            address = None
        if address:
            if self.queue is not None:
                self.queue.put({"zmq_addresses": [address]})
        else:
            if proc.poll() is None:
                forward()
            if self.queue is not None:
                self.queue.put({"error": "qcgflow service did not report an address "
                                         "(exit code %s, ready line %r)" % (proc.poll(), line)})
        proc.wait()
