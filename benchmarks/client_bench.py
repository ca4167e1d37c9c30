#!/usr/bin/env python3
"""Client-side benchmark: qcgflow's upstream-compatible API vs upstream QCG-PilotJob 0.14.2.

    python benchmarks/client_bench.py [--repeat N] [--only qcgflow,upstream] [--json OUT]
                                      [--measures 1,2,3,4] [--rounds 50]

Four measures, side by side for both systems (see benchmarks/README.md, "Client benchmark"):

  1. ``LocalManager()`` then ``finish()``: wall time (fresh client process per repeat).
  2. submit + wait4 of one ``/bin/true`` job on a running manager: median and p90 per
     round trip (``--rounds`` timed round trips per repeat, after a short warm-up).
  3. 500 separate ``/bin/true`` jobs: API (LocalManager start + submit + wait4all +
     finish) against the file interface (``service --file-path``, whole process wall).
  4. Polling cost: a 2000-iteration ``/bin/true`` job submitted over the socket, without
     and with a second process sending ``{"request": "status"}`` in a loop with a 1 ms sleep.

Client code of both systems runs in a child process (upstream's with the side venv's
python, cwd in a scratch directory, since it writes ``.qcgpjm-client/`` there). Every
process is started in its own session; the harness is a child subreaper, so whatever a
service leaves behind is re-parented to it and killed at the end of each run, on
timeout, on Ctrl-C and on SIGTERM. All files live under one temp dir, removed at exit.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import glob
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a dependency of qcgflow
    sys.exit("client_bench.py needs psutil (pip install psutil)")
try:
    import zmq
except ImportError:  # pragma: no cover - pyzmq is a dependency of qcgflow
    sys.exit("client_bench.py needs pyzmq (pip install pyzmq)")


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPSTREAM_PKG = "qcg-pilotjob==0.14.2"
DEFAULT_VENV = "/tmp/qcgflow-bench/venv-qcgpj"
SYSTEMS = ("qcgflow", "upstream")
MEASURES = ("1", "2", "3", "4")
RESULT_MARK = "CLIENT_BENCH_RESULT "
FINAL_STATES = ("SUCCEED", "FAILED", "CANCELED", "OMITTED")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36

GOAL_STARTUP_S = 0.3
GOAL_RTT_MS = 5.0
GOAL_API_FILE = 1.3
GOAL_POLL_LOSS = 0.10

BATCH_JOBS = 500
POLL_ITERATIONS = 2000
SETTLE_S = 0.3  # idle time between "service ready" and the timed submit in measure 4
QUIET = 0.05  # measure 4: a run is "quiet" when foreign CPU was below 5% of the machine


# --------------------------------------------------------------------------
# Scripts run in child processes
# --------------------------------------------------------------------------

# The client side of measures 1-3. argv: system mode params-json. Prints one line
# RESULT_MARK + json. With params["wire"] (qcgflow only) it uses the plain-pyzmq client
# below instead of qcgflow.runtime.api: the fallback when the API is broken.
CLIENT_SCRIPT = r'''
import json, os, select, signal, subprocess, sys, tempfile, time

pc = time.perf_counter
FINAL = ("SUCCEED", "FAILED", "CANCELED", "OMITTED")


class WireJobs:
    """The few bits of Jobs the benchmark uses, as standard descriptions."""
    def __init__(self):
        self.descriptions = []

    def add(self, name, exec, numCores=1):
        self.descriptions.append({"name": name, "execution": {"exec": exec},
                                  "resources": {"numCores": {"exact": numCores}}})
        return self


class WireLocalManager:
    """`qcgflow service --net --ready-fd` in a child, driven over REQ/REP + SUB."""
    def __init__(self, server_args=None):
        import zmq
        args = [str(a) for a in (server_args or [])]
        if "--wd" not in args:
            args += ["--wd", tempfile.mkdtemp(prefix="qcgflow-run-")]
        rfd, wfd = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qcgflow.cli", "service", "--net"] + args +
            ["--ready-fd", str(wfd)], pass_fds=(wfd,), stdin=subprocess.DEVNULL,
            start_new_session=True)
        os.close(wfd)
        buf = b""
        deadline = time.monotonic() + 60
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([rfd], [], [], left)[0]:
                raise RuntimeError("service not ready in 60 s")
            chunk = os.read(rfd, 65536)
            if not chunk:
                raise RuntimeError("service exited before it was ready")
            buf += chunk
        os.close(rfd)
        ready = json.loads(buf.split(b"\n", 1)[0])
        self.ctx = zmq.Context()
        self.req = self.ctx.socket(zmq.REQ)
        self.req.setsockopt(zmq.LINGER, 0)
        self.req.connect(ready["address"])
        self.sub = None
        if ready.get("pub_address"):
            self.sub = self.ctx.socket(zmq.SUB)
            self.sub.setsockopt(zmq.LINGER, 0)
            for topic in ("JFI", "NOJ"):
                self.sub.setsockopt_string(zmq.SUBSCRIBE, topic)
            self.sub.connect(ready["pub_address"])

    def _req(self, message):
        self.req.send_string(json.dumps(message))
        if not self.req.poll(30000):
            raise RuntimeError("no reply in 30 s to %s" % message.get("request"))
        reply = json.loads(self.req.recv_string())
        if reply.get("code", -1) != 0:
            raise RuntimeError("request failed: %s" % reply.get("message"))
        return reply.get("data") or {}

    def _events(self, seconds):
        """Events published within `seconds` (at least one, or none on timeout)."""
        out = []
        if self.sub is None:
            time.sleep(min(seconds, 0.005))
            return out
        if self.sub.poll(int(seconds * 1000)):
            while self.sub.poll(0):
                topic, _, body = self.sub.recv_string().partition(" ")
                out.append((topic, json.loads(body) if body else {}))
        return out

    def submit(self, jobs):
        return self._req({"request": "submit", "jobs": jobs.descriptions})["jobs"]

    def wait4(self, names):
        pending, result = set(names), {}
        while pending:
            jobs = self._req({"request": "jobStatus", "jobNames": sorted(pending)})["jobs"]
            for name, entry in jobs.items():
                state = entry["data"]["status"]
                if state in FINAL:
                    result[name] = state
                    pending.discard(name)
            if pending:
                for topic, data in self._events(0.5):
                    if topic == "JFI" and data.get("job") in pending:
                        result[data["job"]] = data.get("state")
                        pending.discard(data["job"])
        return result

    def wait4all(self):
        while not self._req({"request": "status",
                             "options": {"allJobsFinished": True}}).get("AllJobsFinished"):
            self._events(0.5)

    def list(self):
        return self._req({"request": "listJobs"})["jobs"]

    def finish(self):
        try:
            self._req({"request": "finish"})
        finally:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.req.close()
            if self.sub is not None:
                self.sub.close()
            self.ctx.term()


def make_manager(LocalManager, args):
    return LocalManager() if args is None else LocalManager(list(args))


def main():
    system, mode, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    t_import = pc()
    if params.get("wire"):
        LocalManager, Jobs = WireLocalManager, WireJobs
    elif system == "qcgflow":
        from qcgflow.runtime.api import LocalManager, Jobs
    else:
        from qcg.pilotjob.api.manager import LocalManager
        from qcg.pilotjob.api.job import Jobs
    res = {"import_s": pc() - t_import}
    args = params.get("server_args")
    if mode == "startup":
        t0 = pc()
        manager = make_manager(LocalManager, args)
        t1 = pc()
        manager.finish()
        t2 = pc()
        res.update(start_s=t1 - t0, finish_s=t2 - t1, total_s=t2 - t0)
    elif mode == "rtt":
        warmup, rounds = params["warmup"], params["rounds"]
        manager = make_manager(LocalManager, args)
        try:
            lat = []
            for i in range(warmup + rounds):
                name = "rt%d" % i
                jobs = Jobs()
                jobs.add(name=name, exec="/bin/true", numCores=1)
                t0 = pc()
                names = manager.submit(jobs)
                states = manager.wait4(names)
                dt = pc() - t0
                if states.get(name) != "SUCCEED":
                    raise RuntimeError("job %s ended %r" % (name, states))
                if i >= warmup:
                    lat.append(dt)
        finally:
            manager.finish()
        res["rtt_s"] = lat
    elif mode == "batch":
        njobs = params["jobs"]
        jobs = Jobs()
        for i in range(njobs):
            jobs.add(name="j%d" % i, exec="/bin/true", numCores=1)
        t0 = pc()
        manager = make_manager(LocalManager, args)
        t1 = pc()
        try:
            names = manager.submit(jobs)
            t2 = pc()
            manager.wait4all()
            t3 = pc()
            # untimed check that every job succeeded
            listing = manager.list()
            ok = sum(1 for i in range(njobs)
                     if (listing.get("j%d" % i) or {}).get("status") == "SUCCEED")
        finally:
            t4 = pc()
            manager.finish()
            t5 = pc()
        res.update(start_s=t1 - t0, submit_s=t2 - t1, wait_s=t3 - t2, finish_s=t5 - t4,
                   total_s=(t3 - t0) + (t5 - t4), submitted=len(names), succeeded=ok)
    else:
        raise SystemExit("unknown mode %s" % mode)
    sys.stdout.write("\n" + "CLIENT_BENCH_RESULT " + json.dumps(res) + "\n")
    sys.stdout.flush()


main()
'''

# The loader of measure 4: {"request": "status"} in a loop, 1 ms sleep between a reply
# and the next request. argv: address out-file. On SIGTERM it writes the (monotonic)
# time of every reply to out-file and exits.
POLLER_SCRIPT = r'''
import json, signal, sys, time
import zmq

address, out = sys.argv[1], sys.argv[2]
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
ctx = zmq.Context()
sock = None
stamps, bad, timeouts = [], 0, 0
request = json.dumps({"request": "status"}).encode()
print("ready", flush=True)
while not stop:
    if sock is None:
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
    sock.send(request)
    got = False
    while not stop:
        if sock.poll(200):
            got = True
            break
    if not got:
        if not stop:
            timeouts += 1
        sock.close()
        sock = None
        continue
    reply = sock.recv()
    stamps.append(time.monotonic())
    if len(stamps) <= 3 or len(stamps) % 200 == 0:
        if json.loads(reply).get("code") != 0:
            bad += 1
    time.sleep(0.001)
with open(out, "w") as f:
    json.dump({"stamps": stamps, "bad": bad, "timeouts": timeouts}, f)
'''


# --------------------------------------------------------------------------
# Process hygiene
# --------------------------------------------------------------------------

class Procs:
    """Starts every child in its own session and makes sure none survives."""

    def __init__(self):
        self.groups = set()  # process-group ids of the children started
        self.live = set()  # Popen objects not yet waited for
        self.subreaper = False
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self.subreaper = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            pass

    def spawn(self, cmd, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        popen = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.groups.add(popen.pid)
        self.live.add(popen)
        return popen

    def wait(self, popen, timeout=None):
        """Wait for popen; on timeout kill its group and raise TimeoutExpired."""
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(popen)
            raise
        self.live.discard(popen)
        return popen.returncode

    def kill(self, popen):
        """SIGKILL popen's process group (and whatever is left of it) and reap it."""
        self._killpg(popen.pid)
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.live.discard(popen)
        self._killpg(popen.pid)

    @staticmethod
    def _killpg(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass

    def sweep(self):
        """Kill every group we started and every descendant; reap the orphans."""
        for popen in list(self.live):
            self.kill(popen)
        for pgid in list(self.groups):
            self._killpg(pgid)
        try:
            for child in psutil.Process().children(recursive=True):
                try:
                    child.kill()
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        self.reap()
        self.groups.clear()

    def reap(self):
        """Reap orphans re-parented to us (only when no Popen is waiting)."""
        if self.live:
            return
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def leftovers(self):
        try:
            return [(p.pid, p.name()) for p in psutil.Process().children(recursive=True)]
        except psutil.Error:
            return []


PROCS = None  # the Procs of this run


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

def median(values):
    return statistics.median(values) if values else None


def pct(values, q):
    """The q-quantile (0..1) with linear interpolation."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def spread(values):
    return (min(values), max(values)) if values else (None, None)


class CpuWatch:
    """Share of the machine's CPU used by processes that are not ours during a measure."""

    def __init__(self):
        self.t0, self.busy0, self.own0 = self._snap()
        self.load0 = os.getloadavg()

    @staticmethod
    def _snap():
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
        busy = sum(vals) - vals[3] - vals[4]  # minus idle and iowait
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return time.monotonic(), busy / CLK_TCK, own

    def stop(self):
        t1, busy1, own1 = self._snap()
        wall = max(t1 - self.t0, 1e-9)
        ncpu = os.cpu_count() or 1
        busy, own = busy1 - self.busy0, own1 - self.own0
        return {"wall_s": wall, "machine_busy": busy / (wall * ncpu),
                "ours": own / (wall * ncpu),
                "foreign": max(0.0, busy - own) / (wall * ncpu),
                "loadavg_start": self.load0[0], "loadavg_end": os.getloadavg()[0]}


def busy_cpu_s():
    """CPU seconds the whole machine has been busy (all CPUs, from /proc/stat)."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:9]]
    return (sum(vals) - vals[3] - vals[4]) / CLK_TCK


def tree_cpu_s(procs):
    """CPU seconds of the given psutil processes, with their reaped children, plus ours."""
    total = sum(os.times()[:2])
    for proc in procs:
        try:
            total += sum(proc.cpu_times()[:4])
        except psutil.Error:
            pass
    return total


def log(msg):
    print("[client_bench %s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), msg),
          file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# The two systems
# --------------------------------------------------------------------------

class System:
    def __init__(self, name, python, env):
        self.name = name
        self.python = python
        self.env = env

    def service_cmd(self):
        raise NotImplementedError


class Qcgflow(System):
    def service_cmd(self):
        return [self.python, "-m", "qcgflow.cli", "service"]


class Upstream(System):
    def service_cmd(self):
        return [os.path.join(os.path.dirname(self.python), "qcg-pm-service")]


def ensure_venv(venv):
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        log("creating %s with %s" % (venv, UPSTREAM_PKG))
        subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", venv],
                       check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", UPSTREAM_PKG], check=True)
    check = subprocess.run([python, "-c", "import qcg.pilotjob.api.manager"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError("upstream not importable in %s: %s" % (venv, check.stderr[-500:]))
    return python


def child_env(root, system):
    env = dict(os.environ)
    home = os.path.join(root, "home")
    tmp = os.path.join(root, "tmp")
    os.makedirs(home, exist_ok=True)
    os.makedirs(tmp, exist_ok=True)
    env["HOME"] = home  # nothing of ours writes into the real HOME
    env["TMPDIR"] = tmp  # qcgflow's LocalManager() makes its run dir with mkdtemp
    env.pop("QCG_PM_ZMQ_ADDRESS", None)
    if system == "qcgflow":
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + path if path else "")
    else:
        env.pop("PYTHONPATH", None)
    return env


class Bench:
    def __init__(self, args, root, systems):
        self.args = args
        self.root = root
        self.systems = systems
        self.runs = []  # every run, for --json
        self.problems = []
        self.noise = {}  # measure -> CpuWatch result
        self.client_mode = {s: ("wire" if args.qcgflow_client == "wire" and s == "qcgflow"
                                else "api") for s in systems}
        self.api_failures = []
        self.script = os.path.join(root, "client_script.py")
        with open(self.script, "w") as f:
            f.write(CLIENT_SCRIPT)
        self.poller = os.path.join(root, "poller.py")
        with open(self.poller, "w") as f:
            f.write(POLLER_SCRIPT)
        self.counter = 0
        self.zctx = zmq.Context()
        self.wire_used = set()  # (measure, system) measured with the wire client
        if args.qcgflow_client == "wire" and "qcgflow" in systems:
            self.wire_used.update((m, "qcgflow") for m in ("1", "2", "3"))
        self.poller_env = child_env(root, "poller")

    def rundir(self, label):
        self.counter += 1
        path = os.path.join(self.root, "runs", "%03d-%s" % (self.counter, label))
        os.makedirs(path)
        return path

    def problem(self, text):
        log("PROBLEM: " + text)
        self.problems.append(text)

    def order(self, r):
        """Systems in alternating order, so neither always runs first."""
        names = list(self.systems)
        return names if r % 2 == 0 else names[::-1]

    # ---------------------------------------------------------------- clients
    def client(self, sysname, mode, params, timeout, label):
        """Run CLIENT_SCRIPT; returns (result dict or None, process wall, error text)."""
        system = self.systems[sysname]
        wire = self.client_mode[sysname] == "wire"
        params = dict(params, wire=wire)
        cwd = self.rundir("%s-%s" % (label, sysname))
        out_path, err_path = os.path.join(cwd, "stdout"), os.path.join(cwd, "stderr")
        cmd = [system.python, self.script, sysname, mode, json.dumps(params)]
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t0 = time.perf_counter()
            popen = PROCS.spawn(cmd, cwd=cwd, env=system.env, stdout=out, stderr=err)
            try:
                rc = PROCS.wait(popen, timeout)
                error = None if rc == 0 else "exit code %s" % rc
            except subprocess.TimeoutExpired:
                rc, error = None, "timeout after %s s" % timeout
            wall = time.perf_counter() - t0
            PROCS.kill(popen)  # the group: a service the client did not stop
        PROCS.sweep()  # and anything re-parented to us (a LocalManager's own session)
        result = None
        with open(out_path, errors="replace") as f:
            for line in f:
                if line.startswith(RESULT_MARK):
                    result = json.loads(line[len(RESULT_MARK):])
        if result is None and error is None:
            error = "no result line"
        if error:
            with open(err_path, errors="replace") as f:
                tail = f.read()[-1500:].strip()
            error += (": " + tail) if tail else ""
        run = {"measure": label, "system": sysname, "client": "wire" if wire else "api",
               "cmd": cmd[:2] + cmd[2:4], "params": params, "process_wall_s": wall,
               "result": result, "error": error}
        self.runs.append(run)
        return result, wall, error

    def client_retry(self, sysname, mode, params, timeout, label, samples):
        """client(); if qcgflow's API fails, note it and redo with the wire client.

        samples: the lists of API samples of this measure, emptied on a switch so that a
        measure is never a mix of both clients (the wire then stays for the measure).
        """
        result, wall, error = self.client(sysname, mode, params, timeout, label)
        if error and sysname == "qcgflow" and self.client_mode[sysname] == "api" \
                and self.args.qcgflow_client == "auto":
            self.api_failures.append("measure %s: %s" % (label, error))
            self.problem("qcgflow.runtime.api failed in measure %s (%s); measure %s is "
                         "redone with the plain-pyzmq wire client" % (label, error[:300], label))
            self.client_mode[sysname] = "wire"
            for values in samples:
                values.clear()
            self.wire_used.add((label, sysname))
            result, wall, error = self.client(sysname, mode, params, timeout, label)
        return result, wall, error

    def measure_end(self):
        # the next measure tries the API again
        if self.args.qcgflow_client != "wire":
            for sysname in self.client_mode:
                self.client_mode[sysname] = "api"

    # ---------------------------------------------------------------- measure 1
    def measure_startup(self):
        out = {s: {"total": [], "start": [], "finish": [], "process": [], "import": []}
               for s in self.systems}
        for r in range(self.args.repeat):
            for s in self.order(r):
                args = None if s == "qcgflow" else ["--nodes", "2"]
                res, wall, err = self.client_retry(s, "startup", {"server_args": args}, 90,
                                                   "1", list(out[s].values()))
                if err:
                    self.problem("measure 1 %s run %d: %s" % (s, r, err))
                    continue
                out[s]["total"].append(res["total_s"])
                out[s]["start"].append(res["start_s"])
                out[s]["finish"].append(res["finish_s"])
                out[s]["import"].append(res["import_s"])
                out[s]["process"].append(wall)
                log("1 %-8s LocalManager()+finish() %.3f s (start %.3f, finish %.3f; "
                    "process %.3f s)" % (s, res["total_s"], res["start_s"], res["finish_s"],
                                         wall))
        return out

    # ---------------------------------------------------------------- measure 2
    def measure_rtt(self):
        out = {s: {"all": [], "medians": [], "p90s": []} for s in self.systems}
        params = {"server_args": ["--nodes", "2"], "warmup": 5, "rounds": self.args.rounds}
        for r in range(max(1, self.args.repeat // 2)):
            for s in self.order(r):
                res, _, err = self.client_retry(s, "rtt", params, 180, "2",
                                                 list(out[s].values()))
                if err:
                    self.problem("measure 2 %s run %d: %s" % (s, r, err))
                    continue
                lat = res["rtt_s"]
                out[s]["all"].extend(lat)
                out[s]["medians"].append(median(lat))
                out[s]["p90s"].append(pct(lat, 0.9))
                log("2 %-8s submit+wait4 median %.2f ms, p90 %.2f ms (%d rounds)"
                    % (s, median(lat) * 1e3, pct(lat, 0.9) * 1e3, len(lat)))
        return out

    # ---------------------------------------------------------------- measure 3
    def file_run(self, sysname, njobs, label):
        system = self.systems[sysname]
        cwd = self.rundir("%s-%s-file" % (label, sysname))
        reqs = os.path.join(cwd, "reqs.json")
        jobs = [{"name": "j%d" % i, "execution": {"exec": "/bin/true"},
                 "resources": {"numCores": {"exact": 1}}} for i in range(njobs)]
        with open(reqs, "w") as f:
            json.dump([{"request": "submit", "jobs": jobs},
                       {"request": "control", "command": "finishAfterAllTasksDone"}], f)
        wd = os.path.join(cwd, "wd")
        os.makedirs(wd)
        cmd = system.service_cmd() + ["--file-path", reqs, "--nodes", "2", "--wd", wd,
                                      "--report-format", "json"]
        with open(os.path.join(cwd, "stdout"), "wb") as out, \
                open(os.path.join(cwd, "stderr"), "wb") as err:
            t0 = time.perf_counter()
            popen = PROCS.spawn(cmd, cwd=cwd, env=system.env, stdout=out, stderr=err)
            try:
                rc = PROCS.wait(popen, 300)
                error = None if rc == 0 else "exit code %s" % rc
            except subprocess.TimeoutExpired:
                error = "timeout"
            wall = time.perf_counter() - t0
            PROCS.kill(popen)
        PROCS.sweep()
        if error is None:
            ok = set()
            for report in glob.glob(os.path.join(wd, ".qcgpjm-service-*", "jobs.report")):
                with open(report, errors="replace") as f:
                    for line in f:
                        try:
                            entry = json.loads(line)
                        except ValueError:
                            continue
                        if entry.get("state") == "SUCCEED":
                            ok.add(entry.get("name"))
            missing = njobs - len(ok & {"j%d" % i for i in range(njobs)})
            if missing:
                error = "%d of %d jobs not SUCCEED in jobs.report" % (missing, njobs)
        self.runs.append({"measure": label, "system": sysname, "client": "file",
                          "cmd": cmd, "process_wall_s": wall, "error": error})
        return wall, error

    def measure_batch(self):
        out = {s: {"api": [], "api_process": [], "file": [], "ratio": [], "start": [],
                   "wait": [], "finish": []} for s in self.systems}
        params = {"server_args": ["--nodes", "2"], "jobs": BATCH_JOBS}
        for r in range(self.args.repeat):
            for s in self.order(r):
                api = file_wall = None
                for kind in (("api", "file") if r % 2 == 0 else ("file", "api")):
                    if kind == "api":
                        res, wall, err = self.client_retry(
                            s, "batch", params, 300, "3",
                            [out[s][k] for k in ("api", "api_process", "start", "wait",
                                                 "finish", "ratio")])
                        if not err and res["succeeded"] != BATCH_JOBS:
                            err = "%d of %d jobs SUCCEED" % (res["succeeded"], BATCH_JOBS)
                        if err:
                            self.problem("measure 3 %s API run %d: %s" % (s, r, err))
                            continue
                        api = res["total_s"]
                        out[s]["api"].append(api)
                        out[s]["api_process"].append(wall)
                        out[s]["start"].append(res["start_s"])
                        out[s]["wait"].append(res["submit_s"] + res["wait_s"])
                        out[s]["finish"].append(res["finish_s"])
                    else:
                        file_wall, err = self.file_run(s, BATCH_JOBS, "3")
                        if err:
                            self.problem("measure 3 %s file run %d: %s" % (s, r, err))
                            file_wall = None
                            continue
                        out[s]["file"].append(file_wall)
                if api is not None and file_wall is not None:
                    out[s]["ratio"].append(api / file_wall)
                log("3 %-8s %d jobs: API %s s, file %s s" % (
                    s, BATCH_JOBS, "%.3f" % api if api is not None else "-",
                    "%.3f" % file_wall if file_wall is not None else "-"))
        return out

    # ---------------------------------------------------------------- measure 4
    def _request(self, sock, message, timeout=30.0):
        sock.send_string(json.dumps(message))
        if not sock.poll(int(timeout * 1000)):
            raise RuntimeError("no reply in %s s to %s" % (timeout, message.get("request")))
        reply = json.loads(sock.recv_string())
        if reply.get("code") != 0:
            raise RuntimeError("request %s failed: %s" % (message.get("request"),
                                                            reply.get("message")))
        return reply.get("data") or {}

    def _start_net_service(self, sysname, cwd):
        """(popen, address) of a `--net --nodes 2` service in cwd/wd."""
        system = self.systems[sysname]
        wd = os.path.join(cwd, "wd")
        os.makedirs(wd)
        cmd = system.service_cmd() + ["--net", "--nodes", "2", "--wd", wd]
        out = open(os.path.join(cwd, "stdout"), "wb")
        err = open(os.path.join(cwd, "stderr"), "wb")
        try:
            if sysname == "qcgflow":
                rfd, wfd = os.pipe()
                try:
                    popen = PROCS.spawn(cmd + ["--ready-fd", str(wfd)], cwd=cwd, env=system.env,
                                        stdout=out, stderr=err, pass_fds=(wfd,))
                finally:
                    os.close(wfd)
                buf = b""
                deadline = time.monotonic() + 60
                try:
                    while b"\n" not in buf and time.monotonic() < deadline:
                        if select.select([rfd], [], [], 1.0)[0]:
                            chunk = os.read(rfd, 65536)
                            if not chunk:
                                break
                            buf += chunk
                finally:
                    os.close(rfd)
                if b"\n" not in buf:
                    raise RuntimeError("qcgflow service not ready")
                address = json.loads(buf.split(b"\n", 1)[0])["address"]
            else:
                popen = PROCS.spawn(cmd, cwd=cwd, env=system.env, stdout=out, stderr=err)
                deadline = time.monotonic() + 60
                address = None
                while address is None:
                    if popen.poll() is not None:
                        raise RuntimeError("upstream service exited with %s" % popen.returncode)
                    if time.monotonic() > deadline:
                        raise RuntimeError("upstream service not ready in 60 s")
                    for path in glob.glob(os.path.join(wd, ".qcgpjm-service-*", "address")):
                        with open(path) as f:
                            text = f.read().strip()
                        if text:
                            address = text
                    if address is None:
                        time.sleep(0.02)
        finally:
            out.close()
            err.close()
        return popen, address

    def poll_run(self, sysname, loaded, label):
        """One run of measure 4: dict with wall_s (submit -> all finished) and more."""
        cwd = self.rundir("%s-%s-%s" % (label, sysname, "loaded" if loaded else "base"))
        popen = poller = None
        req = sub = None
        try:
            popen, address = self._start_net_service(sysname, cwd)
            req = self.zctx.socket(zmq.REQ)
            req.setsockopt(zmq.LINGER, 0)
            req.connect(address)
            status = self._request(req, {"request": "status"})
            pub = (status.get("System") or {}).get("StatusPublisher")
            if pub:
                sub = self.zctx.socket(zmq.SUB)
                sub.setsockopt(zmq.LINGER, 0)
                sub.setsockopt_string(zmq.SUBSCRIBE, "NOJ")
                sub.connect(pub)
            stamps_file = os.path.join(cwd, "poller.json")
            if loaded:
                with open(os.path.join(cwd, "poller.err"), "wb") as perr:
                    poller = PROCS.spawn([sys.executable, self.poller, address, stamps_file],
                                         cwd=cwd, env=self.poller_env,
                                         stdout=subprocess.PIPE, stderr=perr)
                if poller.stdout.readline().strip() != b"ready":
                    raise RuntimeError("the status poller did not start")
            time.sleep(SETTLE_S)
            while sub is not None and sub.poll(0):
                sub.recv()  # stale events
            job = {"name": "it", "execution": {"exec": "/bin/true"},
                   "resources": {"numCores": {"exact": 1}},
                   "iteration": {"start": 0, "stop": POLL_ITERATIONS}}
            svc = psutil.Process(popen.pid)
            watched = [svc] + ([psutil.Process(poller.pid)] if poller is not None else [])
            cpu0 = sum(svc.cpu_times()[:2])
            busy0, ours0 = busy_cpu_s(), tree_cpu_s(watched)
            t0 = time.monotonic()
            self._request(req, {"request": "submit", "jobs": [job]})
            detected = None
            deadline = t0 + 300
            while detected is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("the job did not finish in 300 s")
                if sub is not None and sub.poll(200):
                    if sub.recv_string().startswith("NOJ"):
                        t_event = time.monotonic()
                        if self._request(req, {"request": "status", "options": {
                                "allJobsFinished": True}}).get("AllJobsFinished"):
                            detected, t1 = "NOJ", t_event
                    continue
                if sub is None:
                    time.sleep(0.05)
                if self._request(req, {"request": "status", "options": {
                        "allJobsFinished": True}}).get("AllJobsFinished"):
                    detected, t1 = "poll", time.monotonic()
            svc_cpu = sum(svc.cpu_times()[:2]) - cpu0
            busy1, ours1 = busy_cpu_s(), tree_cpu_s(watched)
            ncpu = os.cpu_count() or 1
            foreign = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / ((t1 - t0) * ncpu)
            state = self._request(req, {"request": "jobStatus", "jobNames": ["it"]})
            state = state["jobs"]["it"]["data"]["status"]
            result = {"wall_s": t1 - t0, "detected_by": detected, "job_state": state,
                      "svc_cpu_s": svc_cpu, "foreign_cpu": foreign}
            if loaded:
                poller.send_signal(signal.SIGTERM)
                PROCS.wait(poller, 10)
                with open(stamps_file) as f:
                    stamps = json.load(f)
                inside = sum(1 for t in stamps["stamps"] if t0 <= t <= t1)
                result.update(status_served=inside, status_per_s=inside / (t1 - t0),
                              poller_bad=stamps["bad"], poller_timeouts=stamps["timeouts"])
                poller = None
            if state != "SUCCEED":
                raise RuntimeError("job 'it' ended %s" % state)
            try:
                self._request(req, {"request": "finish"}, timeout=5)
                PROCS.wait(popen, 5)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            return result, None
        except (RuntimeError, OSError, KeyError, ValueError, psutil.Error,
                subprocess.TimeoutExpired) as exc:
            return None, "%s: %s" % (type(exc).__name__, exc)
        finally:
            for sock in (req, sub):
                if sock is not None:
                    sock.close(0)
            for proc in (poller, popen):
                if proc is not None:
                    PROCS.kill(proc)
            if poller is not None and poller.stdout is not None:
                poller.stdout.close()
            PROCS.sweep()

    def measure_polling(self):
        out = {s: {"base": [], "loaded": [], "loss": [], "served": [], "svc_cpu_base": [],
                   "svc_cpu_loaded": [], "detected": [], "foreign": [], "quiet_loss": []}
               for s in self.systems}
        for r in range(self.args.repeat):
            for s in self.order(r):
                pair = {}
                for loaded in ((False, True) if r % 2 == 0 else (True, False)):
                    res, err = self.poll_run(s, loaded, "4")
                    self.runs.append({"measure": "4", "system": s, "loaded": loaded,
                                      "result": res, "error": err})
                    if err:
                        self.problem("measure 4 %s %s run %d: %s" % (
                            s, "loaded" if loaded else "baseline", r, err))
                        continue
                    pair[loaded] = res
                    out[s]["loaded" if loaded else "base"].append(res["wall_s"])
                    out[s]["svc_cpu_loaded" if loaded else "svc_cpu_base"].append(
                        res["svc_cpu_s"])
                    out[s]["detected"].append(res["detected_by"])
                    out[s]["foreign"].append(res["foreign_cpu"])
                    if loaded:
                        out[s]["served"].append(res["status_per_s"])
                if False in pair and True in pair:
                    loss = 1 - pair[False]["wall_s"] / pair[True]["wall_s"]
                    out[s]["loss"].append(loss)
                    if max(pair[False]["foreign_cpu"], pair[True]["foreign_cpu"]) < QUIET:
                        out[s]["quiet_loss"].append(loss)
                    log("4 %-8s %d iterations: baseline %.3f s, loaded %.3f s (%.0f status/s;"
                        " foreign CPU %.0f%% / %.0f%%)"
                        % (s, POLL_ITERATIONS, pair[False]["wall_s"], pair[True]["wall_s"],
                           pair[True]["status_per_s"], pair[False]["foreign_cpu"] * 100,
                           pair[True]["foreign_cpu"] * 100))
        return out

    # ---------------------------------------------------------------- all
    def run(self):
        results = {}
        steps = (("1", self.measure_startup), ("2", self.measure_rtt),
                 ("3", self.measure_batch), ("4", self.measure_polling))
        for key, fn in steps:
            if key not in self.args.measures:
                continue
            log("measure %s ..." % key)
            watch = CpuWatch()
            try:
                results[key] = fn()
            finally:
                self.noise[key] = watch.stop()
                self.measure_end()
                PROCS.sweep()
        return results


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def fmt(value, unit="s", digits=3):
    if value is None:
        return "-"
    if unit == "ms":
        return "%.2f" % (value * 1e3)
    if unit == "%":
        return "%.1f%%" % (value * 100)
    if unit == "x":
        return "%.2fx" % value
    if unit == "/s":
        return "%.0f" % value
    return "%.*f" % (digits, value)


def cell(values, unit="s", with_range=True, stat=median):
    if not values:
        return "-"
    text = fmt(stat(values), unit)
    if with_range and len(values) > 1:
        low, high = spread(values)
        text += " [%s-%s]" % (fmt(low, unit), fmt(high, unit))
    return text


def verdict(value, goal, lower_is_better=True):
    if value is None:
        return "n/a"
    ok = value <= goal if lower_is_better else value >= goal
    return "PASS" if ok else "FAIL"


def build_table(results, systems, bench):
    rows = []  # (measure, qcgflow, upstream, q/u, goal, verdict)

    def get(sysname, key, sub):
        return ((results.get(key) or {}).get(sysname) or {}).get(sub) or []

    def ratio(key, sub, stat=median):
        q, u = get("qcgflow", key, sub), get("upstream", key, sub)
        if not q or not u or not stat(u):
            return "-"
        return fmt(stat(q) / stat(u), "x")

    def tag(key, sysname):
        return " (wire)" if (key, sysname) in bench.wire_used else ""

    if "1" in results:
        q = get("qcgflow", "1", "total")
        rows.append(("1 LocalManager()+finish() [s]",
                     cell(q) + tag("1", "qcgflow"), cell(get("upstream", "1", "total")),
                     ratio("1", "total"), "q <= %.1f s (up ~3.5)" % GOAL_STARTUP_S,
                     verdict(median(q), GOAL_STARTUP_S)))
        rows.append(("  of which LocalManager() [s]", cell(get("qcgflow", "1", "start")),
                     cell(get("upstream", "1", "start")), ratio("1", "start"), "", ""))
        rows.append(("  of which finish() [s]", cell(get("qcgflow", "1", "finish")),
                     cell(get("upstream", "1", "finish")), ratio("1", "finish"), "", ""))
        rows.append(("  client import [s] (not in total)", cell(get("qcgflow", "1", "import")),
                     cell(get("upstream", "1", "import")), ratio("1", "import"), "", ""))
        rows.append(("  whole client process [s]", cell(get("qcgflow", "1", "process")),
                     cell(get("upstream", "1", "process")), ratio("1", "process"), "", ""))
    if "2" in results:
        def rtt_cell(sysname, stat):
            values = get(sysname, "2", "all")
            if not values:
                return "-"
            per = get(sysname, "2", "medians" if stat == 0.5 else "p90s")
            text = fmt(pct(values, stat), "ms")
            if len(per) > 1:
                text += " [%s-%s]" % (fmt(min(per), "ms"), fmt(max(per), "ms"))
            return text + tag("2", sysname)

        def rtt_ratio(q):
            a, b = get("qcgflow", "2", "all"), get("upstream", "2", "all")
            return fmt(pct(a, q) / pct(b, q), "x") if a and b else "-"
        qall = get("qcgflow", "2", "all")
        rows.append(("2 submit+wait4 median [ms]", rtt_cell("qcgflow", 0.5),
                     rtt_cell("upstream", 0.5), rtt_ratio(0.5),
                     "q <= %.0f ms (up 1.7-3.7)" % GOAL_RTT_MS,
                     verdict(pct(qall, 0.5) * 1e3 if qall else None, GOAL_RTT_MS)))
        rows.append(("2 submit+wait4 p90 [ms]", rtt_cell("qcgflow", 0.9),
                     rtt_cell("upstream", 0.9), rtt_ratio(0.9), "", ""))
    if "3" in results:
        rows.append(("3 %d jobs, API [s]" % BATCH_JOBS, cell(get("qcgflow", "3", "api"))
                     + tag("3", "qcgflow"), cell(get("upstream", "3", "api")),
                     ratio("3", "api"), "", ""))
        rows.append(("  API: LocalManager() [s]", cell(get("qcgflow", "3", "start")),
                     cell(get("upstream", "3", "start")), ratio("3", "start"), "", ""))
        rows.append(("  API: submit+wait4all [s]", cell(get("qcgflow", "3", "wait")),
                     cell(get("upstream", "3", "wait")), ratio("3", "wait"), "", ""))
        rows.append(("  API: finish() [s]", cell(get("qcgflow", "3", "finish")),
                     cell(get("upstream", "3", "finish")), ratio("3", "finish"), "", ""))
        rows.append(("3 %d jobs, file interface [s]" % BATCH_JOBS,
                     cell(get("qcgflow", "3", "file")), cell(get("upstream", "3", "file")),
                     ratio("3", "file"), "", ""))

        def api_file(sysname, sub="api"):
            a, f = get(sysname, "3", sub), get(sysname, "3", "file")
            return median(a) / median(f) if a and f else None

        def paired(sysname):
            values = get(sysname, "3", "ratio")
            text = fmt(api_file(sysname), "x")
            if len(values) > 1:
                text += " [%s-%s]" % (fmt(min(values), "x"), fmt(max(values), "x"))
            return text
        rows.append(("3 API/file", paired("qcgflow"), paired("upstream"), "",
                     "q <= %.1fx" % GOAL_API_FILE,
                     verdict(api_file("qcgflow"), GOAL_API_FILE)))
        rows.append(("  API whole client process/file", fmt(api_file("qcgflow", "api_process"),
                                                            "x"),
                     fmt(api_file("upstream", "api_process"), "x"), "", "", ""))
    if "4" in results:
        rows.append(("4 %d its, baseline [s]" % POLL_ITERATIONS,
                     cell(get("qcgflow", "4", "base")), cell(get("upstream", "4", "base")),
                     ratio("4", "base"), "", ""))
        rows.append(("4 %d its, + status loop [s]" % POLL_ITERATIONS,
                     cell(get("qcgflow", "4", "loaded")), cell(get("upstream", "4", "loaded")),
                     ratio("4", "loaded"), "", ""))

        def loss(sysname):
            b, l = get(sysname, "4", "base"), get(sysname, "4", "loaded")
            return 1 - median(b) / median(l) if b and l else None

        def loss_cell(sysname):
            text = fmt(loss(sysname), "%")
            per = get(sysname, "4", "loss")
            if len(per) > 1:
                text += " [%s-%s]" % (fmt(min(per), "%"), fmt(max(per), "%"))
            return text
        rows.append(("4 throughput loss (medians)", loss_cell("qcgflow"), loss_cell("upstream"),
                     "", "q <= %.0f%%" % (GOAL_POLL_LOSS * 100),
                     verdict(loss("qcgflow"), GOAL_POLL_LOSS)))

        def min_loss(sysname):
            b, l = get(sysname, "4", "base"), get(sysname, "4", "loaded")
            return 1 - min(b) / min(l) if b and l else None
        rows.append(("  loss from the fastest runs", fmt(min_loss("qcgflow"), "%"),
                     fmt(min_loss("upstream"), "%"), "", "", ""))

        def quiet_cell(sysname):
            values = get(sysname, "4", "quiet_loss")
            return (cell(values, "%") + " n=%d" % len(values)) if values else "- n=0"
        rows.append(("  loss, quiet pairs (foreign<%d%%)" % (QUIET * 100), quiet_cell("qcgflow"),
                     quiet_cell("upstream"), "", "", ""))
        rows.append(("4 status requests served [/s]", cell(get("qcgflow", "4", "served"), "/s"),
                     cell(get("upstream", "4", "served"), "/s"), ratio("4", "served"), "", ""))
        rows.append(("  service CPU (main proc), base [s]", cell(get("qcgflow", "4", "svc_cpu_base")),
                     cell(get("upstream", "4", "svc_cpu_base")), "", "", ""))
        rows.append(("  service CPU (main proc), loaded [s]",
                     cell(get("qcgflow", "4", "svc_cpu_loaded")),
                     cell(get("upstream", "4", "svc_cpu_loaded")), "", "", ""))
        rows.append(("  foreign CPU during the runs", cell(get("qcgflow", "4", "foreign"), "%"),
                     cell(get("upstream", "4", "foreign"), "%"), "", "", ""))
    return rows


def print_report(results, bench, args, meta):
    rows = build_table(results, bench.systems, bench)
    head = ("measure", "qcgflow", "upstream", "q/u", "goal", "")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = "  ".join("%-*s" % (w, h) for w, h in zip(widths, head))
    print()
    print("qcgflow client benchmark - %s, %d cores, load avg %.2f at start; repeat %d"
          % (meta["host"], meta["ncpu"], meta["loadavg_start"], args.repeat))
    print("medians [min-max over repeats]; measure 2: median/p90 of all %d-round samples "
          "[range of per-run values]" % args.rounds)
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join("%-*s" % (w, c) for w, c in zip(widths, row)))
    print()
    print("noise (share of the %d CPUs during each measure; 'foreign' = processes not "
          "started by this benchmark):" % meta["ncpu"])
    for key, watch in sorted(bench.noise.items()):
        print("  measure %s: %5.1f s, machine busy %3.0f%%, ours %3.0f%%, foreign %3.0f%%, "
              "load avg %.2f -> %.2f" % (key, watch["wall_s"], watch["machine_busy"] * 100,
                                         watch["ours"] * 100, watch["foreign"] * 100,
                                         watch["loadavg_start"], watch["loadavg_end"]))
    if "4" in results:
        det = {s: sorted(set((results["4"].get(s) or {}).get("detected") or []))
               for s in bench.systems}
        print("measure 4 end detected by: %s" % ", ".join(
            "%s %s" % (s, "/".join(d) or "-") for s, d in det.items()))
    if bench.wire_used:
        print("(wire) = measured with the benchmark's plain-pyzmq client, not "
              "qcgflow.runtime.api%s" % (" (the API failed, see Problems)"
                                         if bench.api_failures else ""))
    if bench.problems:
        print()
        print("Problems:")
        for text in bench.problems:
            print("  - " + text[:600])
    left = meta.get("leftover")
    print()
    print("leftover processes: %s" % (left or "none"))


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10,
                        help="runs of measures 1, 3 and 4 (measure 2: half, at least 1)")
    parser.add_argument("--only", default="qcgflow,upstream",
                        help="systems: qcgflow,upstream (default both)")
    parser.add_argument("--measures", default="1,2,3,4", help="which measures (1,2,3,4)")
    parser.add_argument("--rounds", type=int, default=50,
                        help="timed submit+wait4 round trips per run of measure 2")
    parser.add_argument("--json", dest="json_out", help="write every run and the table here")
    parser.add_argument("--venv", default=DEFAULT_VENV, help="upstream's virtualenv")
    parser.add_argument("--qcgflow-client", choices=("auto", "api", "wire"), default="auto",
                        help="qcgflow client for measures 1-3: the API, the plain-pyzmq wire "
                             "client, or the API with the wire as fallback (default)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.measures = [m.strip() for m in args.measures.split(",") if m.strip()]
    for s in args.only:
        if s not in SYSTEMS:
            parser.error("unknown system %s" % s)
    for m in args.measures:
        if m not in MEASURES:
            parser.error("unknown measure %s" % m)
    if args.repeat < 1 or args.rounds < 1:
        parser.error("--repeat and --rounds must be >= 1")
    return args


def _terminate(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main(argv=None):
    global PROCS
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    PROCS = Procs()
    base = "/tmp/qcgflow-bench" if os.path.isdir("/tmp/qcgflow-bench") else None
    root = tempfile.mkdtemp(prefix="client-bench-", dir=base)
    meta = {"host": platform.node(), "ncpu": os.cpu_count(), "python": sys.version.split()[0],
            "loadavg_start": os.getloadavg()[0], "started": datetime.datetime.now().isoformat(),
            "argv": sys.argv, "root": root, "subreaper": PROCS.subreaper}
    bench = None
    results = {}
    try:
        systems = {}
        if "qcgflow" in args.only:
            systems["qcgflow"] = Qcgflow("qcgflow", sys.executable,
                                         child_env(root, "qcgflow"))
        if "upstream" in args.only:
            systems["upstream"] = Upstream("upstream", ensure_venv(args.venv),
                                           child_env(root, "upstream"))
        bench = Bench(args, root, systems)
        t0 = time.monotonic()
        results = bench.run()
        meta["elapsed_s"] = time.monotonic() - t0
    except KeyboardInterrupt:
        log("interrupted")
        raise SystemExit(130)
    finally:
        PROCS.sweep()
        meta["leftover"] = PROCS.leftovers()
        if bench is not None:
            bench.zctx.term()
            print_report(results, bench, args, meta)
            if args.json_out:
                rows = build_table(results, bench.systems, bench)
                with open(args.json_out, "w") as f:
                    json.dump({"meta": meta, "results": results, "noise": bench.noise,
                               "problems": bench.problems, "api_failures": bench.api_failures,
                               "wire_used": sorted(bench.wire_used), "table": rows,
                               "runs": bench.runs}, f, indent=1)
        if args.keep:
            log("kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
