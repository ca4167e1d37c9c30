"""Test driver: ``qcgflow service`` whose requests file may hold requests back.

Usage: ``python _driver.py <qcgflow service options>`` (the same options).

The file interface handles every request of the file before the first job starts, so a
request can never meet a running job. This driver builds the same ``Service`` as
``qcgflow service`` and handles the requests one by one like ``Service.run_file``, except
for pseudo-requests ``{"__wait__": {"job": NAME, "state": STATE, "timeout": SECONDS}}``
(or ``{"__wait__": {"file": PATH}}``): it then runs the event loop until NAME (``job`` or
``job:index``) is in STATE (or PATH, relative to --wd, exists), and goes on with the next
request. Replies are logged to service.log exactly as ``run_file`` does.
After the last request it runs the event loop until no job is unfinished and no process
is left (or, after ``finish``, until no process is left), then ``Service.close()`` writes
final_status.json. (The end of a plain run is tested through the real command line.)

This uses the service's internals (``serving.Service.handler``, ``.loop``, ``.manager``): when
those change, adapt this file, not the tests.
"""

import json
import logging
import os
import signal
import sys
import time

from qcgflow.runtime.config import parse_service_args
from qcgflow.runtime.interfaces.file import read_requests
from qcgflow.runtime.service import EXIT_OK, make_service
from qcgflow.runtime.serving import Interrupted

_log = logging.getLogger("qcgflow.runtime.service")


def _unit_state(manager, name):
    found = manager.lookup_unit(name) if hasattr(manager, "lookup_unit") else None
    if found is None:
        job = manager.registry.get(name)
        return job.state.name if job is not None else None
    job, position = found
    return (job.state if position is None else job.iteration_state(position)).name


def _wait(service, spec):
    deadline = time.monotonic() + float(spec.get("timeout", 10))
    if "file" in spec:
        path = os.path.join(service.wd, spec["file"])
        reached = lambda: os.path.exists(path)  # noqa: E731
        what = "file %s" % spec["file"]
    else:
        reached = lambda: _unit_state(service.manager, spec["job"]) == spec["state"]  # noqa
        what = "%s %s" % (spec["job"], spec["state"])

    def poll():
        if reached() or time.monotonic() > deadline:
            service.loop.stop()
        else:
            service.loop.call_later(0.005, poll)

    service.loop.call_soon(poll)
    service.loop.run()
    if not reached():
        print("driver: gave up waiting for %s after %ss" % (what, spec.get("timeout", 10)),
              file=sys.stderr)


def _run_to_end(service):
    def done():
        return ((service._stopping or service.manager.unfinished == 0)
                and len(service.launcher) == 0)

    def poll():
        if done():
            service.loop.stop()
        else:
            service.loop.call_later(0.005, poll)

    if not done():
        service.loop.call_soon(poll)
        service.loop.run()


def main(argv):
    config = parse_service_args(argv)
    requests = read_requests(config.file_path)
    service = make_service(config)
    service.setup()

    def on_signal(signum, _frame):
        raise Interrupted(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    status = EXIT_OK
    try:
        number = 0
        for request in requests:
            if isinstance(request, dict) and "__wait__" in request:
                _wait(service, request["__wait__"])
                continue
            number += 1
            reply = service.handler.handle(request)
            _log.info("request %d (%s): %s", number,
                      request.get("request") if isinstance(request, dict) else "?",
                      json.dumps(reply))
            if reply.get("code") != 0:
                print("qcgflow service: request %d: %s" % (number, reply.get("message")),
                      file=sys.stderr)
            if service._stopping:
                break
        _run_to_end(service)
    except Interrupted as exc:
        service.interrupt(exc.signum)
        status = 128 + exc.signum
    finally:
        service.close()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
