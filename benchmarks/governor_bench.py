#!/usr/bin/env python3
"""Governor benchmark: partitioned allocation vs one manager, dispatch latency, and how the
governor's dispatch cost grows with the number of managers.

    python benchmarks/governor_bench.py [--tasks 4000] [--repeat 3] [--skip-slurm]
                                        [--managers 1,2,4,8,16,32,64]

* ``slurm`` (dev cluster, ``bash ci/dev-cluster/dev-cluster.sh up``): inside
  ``salloc -N4 -w n1,n2,n3,n4 --exclusive`` (4 nodes x 2 CPUs), ``--tasks`` x /bin/true (one
  iterative job, 1 core each) run by ``qcgflow service --file-path`` with
  ``--slurm-partition-nodes 1`` (a governor + 4 managers; ``--manager-queue-depth`` 1 and 2;
  managers as local children or ``--slurm-partition-start srun``) and as one manager,
  alternated. Wall of
  the whole salloc run; throughput = tasks / (last end - first start) from jobs.report;
  dispatch latency = a unit's QUEUED time in its manager's report minus its SCHEDULED time
  in the governor's (both on this host's clock); report-back latency = the governor's end
  time minus the manager's.
* ``fake``: a governor (``--governor --net``) and K lightweight fake managers in this
  process (one thread, K DEALER sockets, 1 node x 4 cores each) that register like real
  ones and answer every dispatched unit at once with EXECUTING + SUCCEED: the wall and the
  governor's CPU time per unit for ``--tasks`` units show the governor's own dispatch cost.
  (A benchmark harness, not a test double: nothing here is used by the tests.)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from qcgflow.runtime.client import ServiceClient  # noqa: E402
from qcgflow.runtime.governor.messages import PROTOCOL_VERSION  # noqa: E402

SERVICE = [sys.executable, "-m", "qcgflow.cli", "service"]
NODES = ("n1", "n2", "n3", "n4")


def _job(tasks: int) -> dict:
    return {"name": "t", "iteration": {"stop": tasks}, "execution": {"exec": "/bin/true"},
            "resources": {"numCores": {"exact": 1}}}


def _report(path: Path) -> dict:
    return {e["name"]: e for e in map(json.loads, path.read_text().splitlines())}


def _when(entry: dict, state: str) -> float:
    for item in entry["history"]:
        if item["state"] == state:
            return datetime.fromisoformat(item["date"]).timestamp()
    raise KeyError(state)


def _env() -> dict:
    env = dict(os.environ)
    conf = "/tmp/qcgflow-slurm/env.sh"
    if "SLURM_CONF" not in env and os.path.exists(conf):
        for line in Path(conf).read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line[len("export "):].partition("=")
                env[key] = value.strip('"').strip("'")
    return env


def slurm_run(tasks: int, partitioned: bool, depth: int = 1, start: str = "local") -> dict:
    with tempfile.TemporaryDirectory(prefix="qcgflow-gov-bench-") as wd:
        (Path(wd) / "r.json").write_text(json.dumps([{"request": "submit",
                                                      "jobs": [_job(tasks)]}]))
        options = (["--slurm-partition-nodes", "1", "--manager-queue-depth", str(depth),
                    "--slurm-partition-start", start] if partitioned else [])
        start = time.monotonic()
        done = subprocess.run(["salloc", "-N4", "-w", ",".join(NODES), "--exclusive", *SERVICE,
                               "--file-path", "r.json", "--wd", wd, "--id", "g", *options],
                              cwd=wd, env=_env(), capture_output=True, text=True, timeout=600)
        wall = time.monotonic() - start
        if done.returncode != 0:
            raise SystemExit("salloc run failed: %s" % done.stderr[-1000:])
        gov = _report(Path(wd) / ".qcgpjm-service-g" / "jobs.report")
        units = [gov["t:%d" % i] for i in range(tasks)]
        first = min(_when(u, "SCHEDULED") for u in units)
        last = max(_when(u, "SUCCEED") for u in units)
        result = {"wall": wall, "rate": tasks / (last - first)}
        if partitioned:
            remote = {}
            for k in range(len(NODES)):
                remote.update(_report(Path(wd) / (".qcgpjm-service-g.p%d" % k) / "jobs.report"))
            dispatch, back = [], []
            for i, unit in enumerate(units):
                there = remote["t#%d" % i]
                dispatch.append(_when(there, "QUEUED") - _when(unit, "SCHEDULED"))
                back.append(_when(unit, "SUCCEED") - _when(there, "SUCCEED"))
            result["dispatch_ms"] = statistics.median(dispatch) * 1000
            result["dispatch_p90_ms"] = statistics.quantiles(dispatch, n=10)[-1] * 1000
            result["back_ms"] = statistics.median(back) * 1000
        return result


class FakeManagers(threading.Thread):
    """K DEALER sockets that register and answer every unit with EXECUTING + SUCCEED."""

    def __init__(self, count: int, address: str, secrets: str):
        super().__init__(daemon=True)
        self.context = zmq.Context()
        token = (Path(secrets) / "token").read_text().strip()
        self.sockets = []
        for k in range(count):
            sock = self.context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.IDENTITY, b"fake%d" % k)
            sock.connect(address)
            sock.send_json({"op": "register", "version": PROTOCOL_VERSION, "token": token,
                            "id": "fake%d" % k, "tags": ["fake"], "host": "bench",
                            "pid": os.getpid(), "nodes": [["f%d" % k, 4]]})
            self.sockets.append(sock)
        self.stopping = False

    def run(self) -> None:
        poller = zmq.Poller()
        for sock in self.sockets:
            poller.register(sock, zmq.POLLIN)
        while not self.stopping:
            for sock, _ in poller.poll(100):
                while True:
                    try:
                        message = sock.recv_json(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if message["op"] == "submit":
                        events = []
                        for job in message["jobs"]:
                            events.append([job["name"], "EXECUTING", None, None])
                            events.append([job["name"], "SUCCEED", None, {}])
                        sock.send_json({"op": "states", "events": events})
                    elif message["op"] == "beat":
                        sock.send_json({"op": "beat"})

    def close(self) -> None:
        self.stopping = True
        self.join()
        self.context.destroy(linger=0)


def fake_run(tasks: int, count: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="qcgflow-gov-fake-") as wd:
        read_fd, write_fd = os.pipe()
        gov = subprocess.Popen(SERVICE + ["--governor", "--wd", wd, "--id", "g",
                                          "--manager-timeout", "60", "--ready-fd",
                                          str(write_fd)], pass_fds=[write_fd])
        os.close(write_fd)
        with os.fdopen(read_fd) as handle:
            ready = json.loads(handle.readline())
        fakes = FakeManagers(count, ready["governor_address"], ready["governor_secrets"])
        fakes.start()
        client = ServiceClient(ready["address"], timeout=60)
        try:
            while len([m for m in client.request_reply({"request": "status", "options": {}})
                       ["data"]["Managers"] if m["State"] == "UP"]) < count:
                time.sleep(0.02)
            cpu0 = psutil.Process(gov.pid).cpu_times()
            start = time.monotonic()
            client.request_reply({"request": "submit", "jobs": [_job(tasks)]})
            while client.request_reply({"request": "listJobs"})["data"]["jobs"]["t"][
                    "status"] != "SUCCEED":
                time.sleep(0.01)
            wall = time.monotonic() - start
            cpu1 = psutil.Process(gov.pid).cpu_times()
            client.request_reply({"request": "finish"})
        finally:
            client.close()
            gov.wait(timeout=30)
            fakes.close()
        cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        return {"wall": wall, "rate": tasks / wall, "cpu_us_per_unit": cpu / tasks * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-slurm", action="store_true")
    parser.add_argument("--managers", default="1,2,4,8,16,32,64")
    args = parser.parse_args()
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    if not args.skip_slurm:
        modes = [(True, 1, "local"), (True, 2, "local"), (True, 1, "srun"),
                 (False, 1, "local")]
        runs = {mode: [] for mode in modes}
        for _ in range(args.repeat):  # alternated, so a load change hits every mode alike
            for mode in modes:
                runs[mode].append(slurm_run(args.tasks, *mode))
        for (partitioned, depth, start), results in runs.items():
            summary = {key: statistics.median(r[key] for r in results) for key in results[0]}
            print("slurm %s: %s" % ("partitioned (governor + 4 managers, queue depth %d, "
                                    "managers started %s)" % (depth, start) if partitioned
                                    else "one manager", json.dumps(
                                        {k: round(v, 3) for k, v in summary.items()})))
    for count in [int(c) for c in args.managers.split(",")]:
        runs = [fake_run(args.tasks, count) for _ in range(args.repeat)]
        summary = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print("fake managers %3d: %s" % (count, json.dumps(
            {k: round(v, 3) for k, v in summary.items()})))
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
