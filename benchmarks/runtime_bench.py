#!/usr/bin/env python3
"""Runtime benchmark: qcgflow service vs upstream QCG-PilotJob vs the physical floor.

Every workload is run as ONE ``--file-path`` service run per system, on
``--nodes 2`` (one node with 2 cores), side by side in the same invocation:

    python benchmarks/runtime_bench.py [--only floor,upstream,qcgflow]
                                       [--workloads W1,W2,W3-200,W3-2000,W4,M1]
                                       [--repeat N] [--json OUT]

See benchmarks/README.md for what each workload is and how wall time, the
floor, service CPU time and peak RSS are measured.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a dependency of qcgflow
    sys.exit("runtime_bench.py needs psutil (pip install psutil)")


from _trees import compile_for  # noqa: E402 (benchmarks/ is sys.path[0])

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPSTREAM_PKG = "qcg-pilotjob==0.14.2"
DEFAULT_VENV = "/tmp/qcgflow-bench/venv-qcgpj"
DEFAULT_TMP = "/tmp/qcgflow-bench/runs"
ALL_SYSTEMS = ("floor", "upstream", "qcgflow")
ALL_WORKLOADS = ("W1", "W2", "W3-200", "W3-2000", "W4", "M1")
SAMPLE_INTERVAL = 0.05  # seconds between psutil samples
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Names (comm) of descendant processes that are the tasks themselves (or the
# floor's own plumbing).  Any other long-lived descendant of the service is
# treated as a helper of the service and its CPU is added to the service's.
TASK_NAMES = {"true", "bash", "sh", "date", "seq", "xargs"}

RES1 = {"numCores": {"exact": 1}}


# --------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------

class Workload:
    """A workload: its request file, the names it must report, its floor."""

    kind = "batch"  # "batch": run to completion; "m1": start-up probe

    def __init__(self, name, ntasks, descr):
        self.name = name
        self.ntasks = ntasks
        self.descr = descr

    def jobs(self, rundir):
        raise NotImplementedError

    def expected(self):
        """(required names, optional names) of SUCCEED lines in jobs.report.

        Optional names are the summary lines of iterative jobs: upstream
        writes one line for the whole iterative job besides one per
        iteration; if such a line is present it must say SUCCEED too.
        """
        raise NotImplementedError

    def floor_cmd(self):
        return None

    def requests(self, rundir):
        return [
            {"request": "submit", "jobs": self.jobs(rundir)},
            {"request": "control", "command": "finishAfterAllTasksDone"},
        ]


def _true_job(name, **extra):
    job = {"name": name, "execution": {"exec": "/bin/true"}, "resources": dict(RES1)}
    job.update(extra)
    return job


class W1(Workload):
    def __init__(self, n=2000):
        super().__init__("W1", n, f"{n} x /bin/true as one iterative job")
        self.n = n

    def jobs(self, rundir):
        return [_true_job("job", iteration={"start": 0, "stop": self.n})]

    def expected(self):
        return {f"job:{i}" for i in range(self.n)}, {"job"}

    def floor_cmd(self):
        return f"seq {self.n} | xargs -P2 -n1 /bin/true"


class W2(Workload):
    def __init__(self, n=2000):
        super().__init__("W2", n, f"{n} separate /bin/true jobs in one submit")
        self.n = n

    def jobs(self, rundir):
        return [_true_job(f"job{i}") for i in range(self.n)]

    def expected(self):
        return {f"job{i}" for i in range(self.n)}, set()

    def floor_cmd(self):
        return f"seq {self.n} | xargs -P2 -n1 /bin/true"


class W3(Workload):
    def __init__(self, n):
        super().__init__(f"W3-{n}", n, f"chain of {n} /bin/true jobs, each after the previous")
        self.n = n

    def jobs(self, rundir):
        out = [_true_job("hop0")]
        for i in range(1, self.n):
            out.append(_true_job(f"hop{i}", dependencies={"after": [f"hop{i - 1}"]}))
        return out

    def expected(self):
        return {f"hop{i}" for i in range(self.n)}, set()

    def floor_cmd(self):
        return f"for i in $(seq {self.n}); do /bin/true; done"


class W4(Workload):
    def __init__(self, n=1000):
        super().__init__("W4", n + 2, f"fan-out/fan-in: src -> {n} iterations of fan -> sink")
        self.n = n

    def jobs(self, rundir):
        return [
            _true_job("src"),
            _true_job("fan", iteration={"start": 0, "stop": self.n},
                      dependencies={"after": ["src"]}),
            _true_job("sink", dependencies={"after": ["fan"]}),
        ]

    def expected(self):
        return {"src", "sink"} | {f"fan:{i}" for i in range(self.n)}, {"fan"}

    def floor_cmd(self):
        return f"/bin/true && seq {self.n} | xargs -P2 -n1 /bin/true && /bin/true"


class M1(Workload):
    kind = "m1"

    def __init__(self, n=1_000_000):
        super().__init__("M1", n, f"one job of {n} iterations (start-up latency and memory probe)")
        self.n = n

    @staticmethod
    def marker_path(rundir):
        return os.path.join(rundir, "first-iteration.marker")

    def jobs(self, rundir):
        script = f"[ ${{it}} -eq 0 ] && date +%s.%N > {self.marker_path(rundir)}; true"
        return [{"name": "m", "execution": {"script": script}, "resources": dict(RES1),
                 "iteration": {"start": 0, "stop": self.n}}]

    def expected(self):
        return set(), {"m"}


def make_workloads():
    wls = [W1(), W2(), W3(200), W3(2000), W4(), M1()]
    return {w.name: w for w in wls}


# --------------------------------------------------------------------------
# Process running and measurement
# --------------------------------------------------------------------------

def _proc_stat_cpu(pid):
    """utime+stime (seconds) of pid from /proc/<pid>/stat, or None.

    Works on a zombie that has not been reaped yet, and then holds the final
    CPU time of all the process's threads (not of its children)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime/stime are fields 14/15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def kill_tree(pid, known=()):
    """SIGKILL the process group `pid` and every descendant we know of."""
    victims = set(known)
    try:
        victims.update(c.pid for c in psutil.Process(pid).children(recursive=True))
    except (psutil.Error, OSError):
        pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for vp in victims:
        try:
            os.kill(vp, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Sampler(threading.Thread):
    """Samples the service process every SAMPLE_INTERVAL seconds.

    Keeps: the service's own CPU (user+system of all its threads, children
    excluded), its peak RSS (overall and within `rss_window` s of start),
    the CPU/RSS of long-lived non-task descendants ("helpers"), and
    enforces the timeout / the stop condition by killing the process tree.
    """

    def __init__(self, pid, t0, timeout, stop_check=None, rss_window=10.0):
        super().__init__(daemon=True)
        self.pid = pid
        self.t0 = t0
        self.timeout = timeout
        self.stop_check = stop_check
        self.rss_window = rss_window
        self.halt = threading.Event()
        self.timed_out = False
        self.stopped_by_check = False
        self.self_cpu = 0.0
        self.rss_peak = 0
        self.rss_peak_window = 0
        self.helper_seen = {}      # pid -> consecutive samples seen as non-task
        self.helper_cpu = {}       # pid -> last user+system
        self.helper_names = {}
        self.helper_rss_peak = 0
        self.descendants = set()
        self.samples = 0

    def run(self):
        try:
            proc = psutil.Process(self.pid)
        except psutil.Error:
            return
        while True:
            elapsed = time.monotonic() - self.t0
            self._sample(proc, elapsed)
            if elapsed > self.timeout:
                self.timed_out = True
                kill_tree(self.pid, self.descendants)
                return
            if self.stop_check is not None and self.stop_check(elapsed):
                self.stopped_by_check = True
                kill_tree(self.pid, self.descendants)
                return
            if self.halt.wait(SAMPLE_INTERVAL):
                return

    def _sample(self, proc, elapsed):
        self.samples += 1
        try:
            with proc.oneshot():
                ct = proc.cpu_times()
                rss = proc.memory_info().rss
                if proc.status() == psutil.STATUS_ZOMBIE:
                    return
            self.self_cpu = ct.user + ct.system
            self.rss_peak = max(self.rss_peak, rss)
            if elapsed <= self.rss_window:
                self.rss_peak_window = max(self.rss_peak_window, rss)
            children = proc.children(recursive=True)
        except psutil.Error:
            return
        helper_rss = 0
        current = set()
        for child in children:
            self.descendants.add(child.pid)
            try:
                with child.oneshot():
                    name = child.name()
                    if name in TASK_NAMES:
                        continue
                    cct = child.cpu_times()
                    crss = child.memory_info().rss
            except psutil.Error:
                continue
            current.add(child.pid)
            seen = self.helper_seen.get(child.pid, 0) + 1
            self.helper_seen[child.pid] = seen
            # a child caught between fork and exec still bears the parent's
            # name: count a helper only once it has lived 2 samples
            if seen >= 2:
                self.helper_cpu[child.pid] = cct.user + cct.system
                self.helper_names[child.pid] = name
                helper_rss += crss
        for gone in set(self.helper_seen) - current:
            if gone not in self.helper_cpu:
                del self.helper_seen[gone]
        self.helper_rss_peak = max(self.helper_rss_peak, helper_rss)


def run_measured(cmd, cwd, env, timeout, stop_check=None, rss_window=10.0):
    """Run `cmd` in a new session and measure it. Returns a dict."""
    out = open(os.path.join(cwd, "stdout.txt"), "wb")
    err = open(os.path.join(cwd, "stderr.txt"), "wb")
    t0_wall = time.time()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=out, stderr=err, start_new_session=True)
    sampler = Sampler(proc.pid, t0, timeout, stop_check=stop_check, rss_window=rss_window)
    sampler.start()
    reaped = False
    try:
        # wait for exit WITHOUT reaping, so the zombie's /proc stat still
        # holds the final CPU time of the service itself
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        t1 = time.monotonic()
        final_cpu = _proc_stat_cpu(proc.pid)
        _, status, ru = os.wait4(proc.pid, 0)
        reaped = True
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        sampler.halt.set()
        kill_tree(proc.pid, sampler.descendants)
        if not reaped:
            try:
                _, status, ru = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                pass
        sampler.join(2)
        out.close()
        err.close()
    svc_cpu = final_cpu if final_cpu is not None else sampler.self_cpu
    helper_cpu = sum(sampler.helper_cpu.values())
    return {
        "t0_wall": t0_wall,
        "wall_s": t1 - t0,
        "returncode": proc.returncode,
        "timed_out": sampler.timed_out,
        "stopped": sampler.stopped_by_check,
        "svc_self_cpu_s": svc_cpu,
        "svc_self_cpu_sampled_s": sampler.self_cpu,
        "svc_helper_cpu_s": helper_cpu,
        "svc_helpers": sorted(set(sampler.helper_names.values())),
        "svc_cpu_s": svc_cpu + helper_cpu,
        "tree_cpu_s": ru.ru_utime + ru.ru_stime,
        "rss_peak_mb": sampler.rss_peak / 2**20,
        "rss_peak_window_mb": sampler.rss_peak_window / 2**20,
        "helper_rss_peak_mb": sampler.helper_rss_peak / 2**20,
        "samples": sampler.samples,
    }


# --------------------------------------------------------------------------
# Systems
# --------------------------------------------------------------------------

def ensure_upstream(venv):
    """Return the path of qcg-pm-service in `venv`, creating the venv if needed."""
    exe = os.path.join(venv, "bin", "qcg-pm-service")
    if os.access(exe, os.X_OK):
        return exe
    print(f"[setup] creating upstream venv {venv} with {UPSTREAM_PKG} ...", flush=True)
    os.makedirs(os.path.dirname(venv) or ".", exist_ok=True)
    python3 = shutil.which("python3") or sys.executable
    subprocess.run([python3, "-m", "venv", venv], check=True)
    subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q",
                    UPSTREAM_PKG], check=True)
    if not os.access(exe, os.X_OK):
        raise RuntimeError(f"{exe} missing after installing {UPSTREAM_PKG}")
    return exe


def upstream_version(venv):
    try:
        res = subprocess.run(
            [os.path.join(venv, "bin", "python"), "-c",
             "import importlib.metadata as m; print(m.version('qcg-pilotjob'))"],
            capture_output=True, text=True, timeout=60)
        return res.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def qcgflow_command(override):
    """(argv prefix, env additions) for running `qcgflow service`."""
    if override:
        return shlex.split(override), {}
    exe = shutil.which("qcgflow")
    if exe and os.path.basename(os.path.dirname(exe)) == "shims" and shutil.which("pyenv"):
        # a pyenv shim is a bash script running `pyenv exec` (~30 ms per
        # start): use the real entry point it resolves to
        try:
            real = subprocess.run(["pyenv", "which", "qcgflow"], capture_output=True,
                                  text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            real = ""
        exe = real if real and os.access(real, os.X_OK) else exe
    if exe:
        return [exe, "service"], {}
    pp = os.environ.get("PYTHONPATH")
    return ([sys.executable, "-m", "qcgflow.cli", "service"],
            {"PYTHONPATH": REPO_ROOT + (os.pathsep + pp if pp else "")})


def qcgflow_ready(prefix, extra_env):
    env = dict(os.environ, **extra_env)
    try:
        res = subprocess.run(prefix + ["--help"], capture_output=True, text=True,
                             timeout=60, env=env, cwd=tempfile.gettempdir())
    except (OSError, subprocess.SubprocessError) as exc:
        return False, str(exc)
    text = res.stdout + res.stderr
    if res.returncode != 0 or "--file-path" not in text:
        last = text.strip().splitlines()[-1:] or ["no output"]
        return False, f"`{' '.join(prefix)} --help` rc={res.returncode}: {last[0]}"
    return True, ""


# --------------------------------------------------------------------------
# Correctness check
# --------------------------------------------------------------------------

def find_report(wd):
    hits = sorted(glob.glob(os.path.join(wd, ".qcgpjm-service-*", "jobs.report")))
    return hits[-1] if hits else None


def _parse_date(text):
    try:
        return datetime.datetime.fromisoformat(str(text).replace(" ", "T"))
    except ValueError:
        return None


def check_report(wd, workload):
    """(ok, succeed_count, expected_count, reason, span_s).

    span_s: last minus first timestamp in the jobs' histories, i.e. the time
    the service spent on the jobs, without its start-up and shutdown."""
    required, optional = workload.expected()
    report = find_report(wd)
    if report is None:
        return False, 0, len(required), "no jobs.report", None
    states = {}
    bad_lines = 0
    first = last = None
    with open(report) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
                states.setdefault(rec["name"], []).append(rec["state"])
            except (ValueError, KeyError, TypeError):
                bad_lines += 1
                continue
            hist = rec.get("history")
            for ent in hist if isinstance(hist, list) else ():
                when = _parse_date(ent.get("date")) if isinstance(ent, dict) else None
                if when is not None:
                    first = when if first is None or when < first else first
                    last = when if last is None or when > last else last
    span = (last - first).total_seconds() if first is not None else None
    succeed = sum(1 for n in required if states.get(n) == ["SUCCEED"])
    problems = []
    if bad_lines:
        problems.append(f"{bad_lines} unparsable lines")
    if succeed != len(required):
        problems.append(f"{succeed}/{len(required)} expected names SUCCEED once")
    for name in optional:
        if name in states and states[name] != ["SUCCEED"]:
            problems.append(f"{name}: {states[name]}")
    extra = set(states) - required - optional
    if extra:
        problems.append(f"{len(extra)} unexpected names (e.g. {sorted(extra)[0]})")
    return not problems, succeed, len(required), "; ".join(problems), span


# --------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------

def run_one(system, workload, rep, ctx):
    rundir = os.path.join(ctx["tmp"], f"{workload.name}-{system}-r{rep}")
    os.makedirs(rundir)
    res = {"workload": workload.name, "system": system, "rep": rep, "ntasks": workload.ntasks}
    env = dict(os.environ)
    if system == "floor":
        cmd = ["bash", "-c", workload.floor_cmd()]
    else:
        reqs = os.path.join(rundir, "reqs.json")
        with open(reqs, "w") as fh:
            json.dump(workload.requests(rundir), fh)
        wd = os.path.join(rundir, "wd")
        os.makedirs(wd)
        common = ["--file-path", reqs, "--nodes", "2", "--wd", wd, "--report-format", "json"]
        if system == "upstream":
            cmd = [ctx["upstream_exe"]] + common
        else:
            cmd = ctx["qcgflow_prefix"] + common
            env.update(ctx["qcgflow_env"])
    if ctx["clean_home"]:
        # an empty HOME: `bash -l` (upstream runs `script` jobs so) must not
        # source the user's dotfiles (here: ~/.profile -> pyenv init, 0.1 s)
        home = os.path.join(rundir, "home")
        os.makedirs(home)
        orig_home = os.path.expanduser("~")
        env["HOME"] = home
        if "PYENV_ROOT" not in env and os.path.isdir(os.path.join(orig_home, ".pyenv")):
            env["PYENV_ROOT"] = os.path.join(orig_home, ".pyenv")
    res["cmd"] = " ".join(shlex.quote(c) for c in cmd)

    stop_check = None
    if workload.kind == "m1":
        marker = M1.marker_path(rundir)
        window = ctx["m1_window"]
        limit = ctx["m1_timeout"]

        def stop_check(elapsed, marker=marker):
            seen = os.path.exists(marker) and os.path.getsize(marker) > 0
            return (elapsed >= window and seen) or elapsed >= limit

    try:
        m = run_measured(cmd, rundir, env, ctx["timeout"], stop_check=stop_check,
                         rss_window=ctx["m1_window"])
    except KeyboardInterrupt:
        if not ctx["keep"]:
            shutil.rmtree(rundir, ignore_errors=True)
        raise
    res.update(m)

    if workload.kind == "m1":
        marker = M1.marker_path(rundir)
        first = None
        try:
            with open(marker) as fh:
                first = float(fh.read().strip()) - m["t0_wall"]
        except (OSError, ValueError):
            pass
        res["first_start_s"] = first
        report = find_report(os.path.join(rundir, "wd"))
        if report:
            with open(report) as fh:
                res["report_lines_at_kill"] = sum(1 for _ in fh)
        if first is None:
            res["status"] = "NO-START"
            res["reason"] = "no marker from iteration 0"
        elif not m["stopped"] and m["returncode"] != 0:
            res["status"] = "FAILED"
            res["reason"] = f"service exited rc={m['returncode']} before the probe ended"
        else:
            res["status"] = "OK"
            res["reason"] = ""
    elif m["timed_out"]:
        res["status"], res["reason"] = "TIMEOUT", f"killed after {ctx['timeout']} s"
    elif m["returncode"] != 0:
        res["status"], res["reason"] = "FAILED", f"rc={m['returncode']}"
    elif system == "floor":
        res["status"], res["reason"] = "OK", ""
    else:
        ok, got, want, why, span = check_report(os.path.join(rundir, "wd"), workload)
        res["succeed"], res["expected"], res["report_span_s"] = got, want, span
        res["status"], res["reason"] = ("OK", "") if ok else ("INVALID", why)

    if res["status"] == "OK" and not ctx["keep"]:
        shutil.rmtree(rundir, ignore_errors=True)
    else:
        res["rundir"] = rundir
    return res


# --------------------------------------------------------------------------
# Summary and table
# --------------------------------------------------------------------------

def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs, workloads, systems):
    summary = []
    for wname in workloads:
        for system in systems:
            rs = [r for r in runs if r["workload"] == wname and r["system"] == system]
            if not rs:
                continue
            ok = [r for r in rs if r["status"] == "OK"]
            bad = [r["status"] for r in rs if r["status"] != "OK"]
            if not bad:
                status = "OK"
            else:
                status = f"{bad[0]}({len(bad)}/{len(rs)})" if len(rs) > 1 else bad[0]
            s = {"workload": wname, "system": system, "status": status, "runs": len(rs),
                 "ok_runs": len(ok), "ntasks": rs[0]["ntasks"]}
            for key in ("wall_s", "svc_cpu_s", "svc_self_cpu_s", "svc_helper_cpu_s",
                        "tree_cpu_s", "first_start_s", "rss_peak_window_mb",
                        "rss_peak_mb", "helper_rss_peak_mb", "report_lines_at_kill",
                        "report_span_s"):
                s[key] = _median([r.get(key) for r in ok])
            s["reasons"] = sorted({r["reason"] for r in rs if r["reason"]})
            summary.append(s)
    by = {(s["workload"], s["system"]): s for s in summary}
    for s in summary:
        floor = by.get((s["workload"], "floor"))
        up = by.get((s["workload"], "upstream"))
        wall = s["wall_s"]
        s["x_floor"] = (wall / floor["wall_s"]
                        if wall and floor and floor["wall_s"] and s["workload"] != "M1" else None)
        s["x_upstream"] = (wall / up["wall_s"]
                           if wall and up and up["wall_s"] and s["system"] != "floor"
                           and s["workload"] != "M1" else None)
        s["per_task_ms"] = wall / s["ntasks"] * 1e3 if wall and s["workload"] != "M1" else None
        svc_cpu = s["svc_cpu_s"] if s["system"] != "floor" else None
        s["svc_cpu_ms_per_task"] = (svc_cpu / s["ntasks"] * 1e3
                                    if svc_cpu is not None and s["workload"] != "M1" else None)
        s["tree_cpu_ms_per_task"] = (s["tree_cpu_s"] / s["ntasks"] * 1e3
                                     if s["tree_cpu_s"] is not None and s["workload"] != "M1"
                                     else None)
    return summary


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_tables(summary, out=sys.stdout):
    main = [s for s in summary if s["workload"] != "M1"]
    if main:
        hdr = (f"{'workload':<9} {'system':<9} {'wall_s':>8} {'x_floor':>8} {'x_upstream':>10} "
               f"{'per_task_ms':>11} {'svc_cpu_ms/task':>15} {'tree_cpu_ms/task':>16}  status")
        print(hdr, file=out)
        for s in main:
            print(f"{s['workload']:<9} {s['system']:<9} {_fmt(s['wall_s'], '.2f'):>8} "
                  f"{_fmt(s['x_floor'], '.2f'):>8} {_fmt(s['x_upstream'], '.2f'):>10} "
                  f"{_fmt(s['per_task_ms'], '.2f'):>11} "
                  f"{_fmt(s['svc_cpu_ms_per_task'], '.2f'):>15} "
                  f"{_fmt(s['tree_cpu_ms_per_task'], '.2f'):>16}  {s['status']}", file=out)
    chain = {}
    for s in main:
        if s["workload"].startswith("W3-") and s["wall_s"] is not None:
            chain.setdefault(s["system"], {})[int(s["workload"][3:])] = s
    if chain:
        print("\nW3 per-hop ms (flat per-hop cost means equal figures across N):", file=out)
        print("  wall/N includes start-up; marginal = (wall_Nmax - wall_Nmin) / (Nmax - Nmin);",
              file=out)
        print("  in-service = jobs.report span (first to last history date) / N", file=out)
        for system, d in chain.items():
            ns = sorted(d)
            walls = ", ".join(f"N={n}: {d[n]['per_task_ms']:.2f}" for n in ns)
            line = f"  {system:<9} wall/N {walls}"
            if len(ns) >= 2:
                lo, hi = ns[0], ns[-1]
                line += (f" ({d[hi]['per_task_ms'] / d[lo]['per_task_ms']:.2f}x); marginal "
                         f"{(d[hi]['wall_s'] - d[lo]['wall_s']) / (hi - lo) * 1e3:.2f}")
            spans = [(n, d[n]["report_span_s"]) for n in ns if d[n]["report_span_s"]]
            if spans:
                line += "; in-service " + ", ".join(f"N={n}: {v / n * 1e3:.2f}" for n, v in spans)
            print(line, file=out)
    m1 = [s for s in summary if s["workload"] == "M1"]
    if m1:
        print("\nM1 (1,000,000 iterations of a bash script; killed after the probe):", file=out)
        print(f"{'workload':<9} {'system':<9} {'first_start_s':>13} {'rss_peak_MB(10s)':>16} "
              f"{'helper_rss_MB':>13} {'iters@kill':>10}  status", file=out)
        for s in m1:
            print(f"{s['workload']:<9} {s['system']:<9} {_fmt(s['first_start_s'], '.3f'):>13} "
                  f"{_fmt(s['rss_peak_window_mb'], '.1f'):>16} "
                  f"{_fmt(s['helper_rss_peak_mb'] or None, '.1f'):>13} "
                  f"{_fmt(s['report_lines_at_kill'], '.0f'):>10}  {s['status']}", file=out)
    problems = [s for s in summary if s["reasons"]]
    if problems:
        print("\nProblems:", file=out)
        for s in problems:
            print(f"  {s['workload']} {s['system']}: {' | '.join(s['reasons'])}", file=out)


METHOD = """\
Method: wall_s = median over repeats of OK runs, from just before spawning the
  service to its exit (start-up included). per_task_ms = wall_s / tasks (W3:
  per hop). svc_cpu = user+system CPU of the service process itself (all its
  threads, children excluded), read from /proc/<pid>/stat of its zombie right
  before it is reaped (psutil samples every 50 ms as a fallback), plus the
  last-sampled CPU of long-lived non-task descendants (helpers) if any.
  tree_cpu = os.wait4 rusage of the service: itself + all reaped descendants
  (i.e. + the tasks). floor: W1/W2 `seq N | xargs -P2 -n1 /bin/true`; W4 the
  same for 1000 between two serial /bin/true; W3 a serial bash loop.
  M1: first_start_s = time from spawning the service to `date` written by
  iteration 0; rss = peak RSS of the service process (50 ms samples) in the
  first 10 s; iters@kill = lines in jobs.report when killed. Services run
  with an empty HOME (see --inherit-home). Correctness: every expected name
  must have exactly one SUCCEED line in jobs.report, else the run is INVALID
  and excluded from medians."""


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(ALL_SYSTEMS),
                   help="comma-separated systems: floor,upstream,qcgflow (default: all)")
    p.add_argument("--workloads", default=",".join(ALL_WORKLOADS),
                   help="comma-separated workloads: " + ",".join(ALL_WORKLOADS)
                   + " ('W3' means both W3 lengths)")
    p.add_argument("--repeat", type=int, default=1, help="runs per workload/system; median reported")
    p.add_argument("--json", metavar="OUT", help="write all runs and the summary as JSON")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="per-run timeout in s; the process group is killed (default 600)")
    p.add_argument("--venv", default=DEFAULT_VENV,
                   help=f"virtualenv with {UPSTREAM_PKG} (created if missing; default {DEFAULT_VENV})")
    p.add_argument("--qcgflow-cmd", default=None,
                   help="command prefix for our service (default: `qcgflow service` if on PATH, "
                   "else `python -m qcgflow.cli service`)")
    p.add_argument("--tmp", default=DEFAULT_TMP, help=f"parent of the run directories (default {DEFAULT_TMP})")
    p.add_argument("--keep", action="store_true", help="keep run directories of OK runs too")
    p.add_argument("--inherit-home", action="store_true",
                   help="run the services with the caller's HOME (default: an empty HOME per "
                   "run, so `bash -l` task shells do not source the user's dotfiles)")
    p.add_argument("--m1-window", type=float, default=10.0,
                   help="M1: seconds of RSS sampling before the kill (default 10)")
    p.add_argument("--m1-timeout", type=float, default=120.0,
                   help="M1: give up waiting for the first iteration after this many s (default 120)")
    return p.parse_args(argv)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    args = parse_args(argv)
    # Ctrl-C / SIGTERM -> KeyboardInterrupt, so the running service's process
    # group is killed (also when started with SIGINT ignored, e.g. `cmd &`)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    wl_all = make_workloads()
    systems = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in systems:
        if s not in ALL_SYSTEMS:
            sys.exit(f"unknown system {s!r}; choose from {', '.join(ALL_SYSTEMS)}")
    wnames = []
    for w in (w.strip() for w in args.workloads.split(",")):
        if not w:
            continue
        names = [n for n in ALL_WORKLOADS if n.startswith("W3-")] if w == "W3" else [w]
        for n in names:
            if n not in wl_all:
                sys.exit(f"unknown workload {n!r}; choose from {', '.join(ALL_WORKLOADS)}")
            if n not in wnames:
                wnames.append(n)

    os.makedirs(args.tmp, exist_ok=True)
    ctx = {"tmp": tempfile.mkdtemp(prefix="bench-", dir=args.tmp), "timeout": args.timeout,
           "keep": args.keep, "clean_home": not args.inherit_home, "m1_window": args.m1_window, "m1_timeout": args.m1_timeout}
    meta = {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": os.cpu_count(), "systems": systems, "workloads": wnames,
            "repeat": args.repeat, "timeout_s": args.timeout, "clean_home": not args.inherit_home, "sample_interval_s": SAMPLE_INTERVAL,
            "method": METHOD}
    notes = []
    active = list(systems)
    if "upstream" in active:
        try:
            ctx["upstream_exe"] = ensure_upstream(args.venv)
            meta["upstream"] = f"qcg-pilotjob {upstream_version(args.venv)} ({ctx['upstream_exe']})"
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            notes.append(f"upstream skipped: {exc}")
            active.remove("upstream")
    if "qcgflow" in active:
        prefix, extra_env = qcgflow_command(args.qcgflow_cmd)
        ready, why = qcgflow_ready(prefix, extra_env)
        if ready:
            ctx["qcgflow_prefix"], ctx["qcgflow_env"] = prefix, extra_env
            if "-m" in prefix:  # a source tree: its .pyc files first (_trees.py)
                compile_for(prefix[:prefix.index("-m")], dict(os.environ, **extra_env))
            meta["qcgflow"] = " ".join(prefix)
        else:
            notes.append(f"qcgflow NOT READY, skipped: {why}")
            active.remove("qcgflow")
    for n in notes:
        print(f"[note] {n}", flush=True)
    meta["notes"] = notes
    for k in ("upstream", "qcgflow"):
        if k in meta:
            print(f"[setup] {k}: {meta[k]}", flush=True)
    print(f"[setup] run dirs under {ctx['tmp']}", flush=True)

    runs = []
    try:
        for wname in wnames:
            w = wl_all[wname]
            for rep in range(args.repeat):
                for system in active:
                    if system == "floor" and w.floor_cmd() is None:
                        continue
                    r = run_one(system, w, rep, ctx)
                    runs.append(r)
                    extra = ""
                    if w.kind == "m1":
                        extra = (f" first_start={_fmt(r.get('first_start_s'), '.3f')}s "
                                 f"rss10s={r['rss_peak_window_mb']:.1f}MB")
                    print(f"[run] {wname:<8} {system:<9} rep {rep}: wall {r['wall_s']:.2f}s "
                          f"svc_cpu {r['svc_cpu_s']:.2f}s{extra} {r['status']} {r['reason']}",
                          flush=True)
    except KeyboardInterrupt:
        print("\n[interrupted] partial results:", flush=True)
    finally:
        try:
            os.rmdir(ctx["tmp"])  # only if every run dir was removed
        except OSError:
            pass

    summary = summarise(runs, wnames, systems)
    print()
    print_tables(summary)
    print()
    print(METHOD)
    for n in notes:
        print(f"Note: {n}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "runs": runs, "summary": summary}, fh, indent=2)
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
