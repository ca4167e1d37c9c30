"""Ray-style ``.remote`` loops and a big map, qcgflow beside Ray, alternated, in one run.

    python benchmarks/remote_bench.py [--repeat 3] [--ray-python PY] [--dir DIR]
                                      [--tasks 2000 --chain 200 --fan 1000 --map 20000]
                                      [--only qcgflow|ray] [--profile OUT.prof] [--json OUT]
                                      [--before SRC]   # an earlier tree, alternated too

Measured as Ray's own benchmark measures itself (its anchor scripts): a session started
(``qcgflow.init(nodes=2)`` / ``ray.init(num_cpus=2)``) and warmed with 100 no-op tasks
outside the timing, each workload timed from its first submit to its last result:

* P1C (before the warm-up): one call of a function ``fresh``, then a loop of N
  ``fresh.remote(i)`` and one ``get``: a loop to a function the session has seen return
  once (qcgflow bundles the calls of functions known to be short: here only once the
  loop's first results are back; no goal);
* P1: a loop of N separate ``noop.remote(i)``, then one ``get`` of the N refs;
* P3: a chain of M ``.remote`` calls, each given its predecessor's ref, then ``get``;
* P4: 1 -> K -> 1: ``root = noop.remote(0)``, K ``noop.remote(i, root)``, one
  ``gather.remote(*refs)``, ``get``;
* CPU per task of P1 and P3 by role (qcgflow only): this process (the client), the
  service process, and the rest of its tree (the warm workers), from psutil before and
  after each workload: where the time goes, before any profiler;
* MAP: a mapped task of L elements and one gathering task through ``qcgflow.run`` (the
  local service's start and stop included; its run directory on the disk chosen by
  ``--dir``); Ray: ``gather.remote(*[noop.remote(i) for i in range(L)])`` in the warmed
  session (``ray.init`` excluded: stricter for qcgflow). After the run the benchmark
  counts every file and directory left in the run directory.

Each system runs in a child process of its own per repeat; the order alternates from one
repeat to the next. The report gives the median and [min-max] over repeats, and the
ratios of the medians. ``--profile`` writes cProfile stats of qcgflow's client process
(the P1..P4 part) for ``python -m pstats``.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
from _trees import compile_tree  # noqa: E402 (benchmarks/ is sys.path[0])

DEFAULT_RAY = "/tmp/qcgflow-bench/venv-ray/bin/python"

RAY_SCRIPT = r"""
import json, sys, time
import ray
n, m, k, big = (int(x) for x in sys.argv[1:5])
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

@ray.remote
def noop(x, *rest):
    return x

@ray.remote
def gather(*xs):
    return len(xs)

@ray.remote
def fresh(x):
    return x

out = {}
ray.get(fresh.remote(-1))
t = time.perf_counter()
assert ray.get([fresh.remote(i) for i in range(n)]) == list(range(n))
out["P1C"] = time.perf_counter() - t
ray.get([noop.remote(i) for i in range(100)])
t = time.perf_counter()
refs = [noop.remote(i) for i in range(n)]
ray.get(refs)
out["P1"] = time.perf_counter() - t
t = time.perf_counter()
ref = noop.remote(0)
for _ in range(m - 1):
    ref = noop.remote(ref)
ray.get(ref)
out["P3"] = time.perf_counter() - t
t = time.perf_counter()
root = noop.remote(0)
assert ray.get(gather.remote(*[noop.remote(i, root) for i in range(k)])) == k
out["P4"] = time.perf_counter() - t
if big:
    t = time.perf_counter()
    assert ray.get(gather.remote(*[noop.remote(i) for i in range(big)])) == big
    out["MAP"] = time.perf_counter() - t
print(json.dumps(out))
ray.shutdown()
"""

QCGFLOW_SCRIPT = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import qcgflow
n, m, k, big = (int(x) for x in sys.argv[2:6])
wd, profile = sys.argv[6], sys.argv[7]

@qcgflow.task
def noop(x, *rest):
    return x

@qcgflow.task
def gather(*xs):
    return len(xs)

@qcgflow.task
def gather_list(xs):
    return len(xs)

@qcgflow.task
def fresh(x):
    return x

def cpu_by_role():  # CPU s so far: this process (client), the service, the rest (workers)
    import psutil
    me = psutil.Process()
    roles = {"client": 0.0, "service": 0.0, "workers": 0.0}
    for proc in [me] + me.children(recursive=True):
        try:
            times, cmd = proc.cpu_times(), " ".join(proc.cmdline())
        except psutil.Error:
            continue
        role = ("client" if proc.pid == me.pid else
                "service" if " service" in cmd and "zygote" not in cmd else "workers")
        roles[role] += times.user + times.system
    return roles


out = {}


def cpu_per_task(key, before, tasks):
    after = cpu_by_role()
    for role, value in after.items():
        out["%s_cpu_%s" % (key, role)] = (value - before[role]) / tasks * 1000.0  # ms


with qcgflow.init(nodes=2, wd=os.path.join(wd, "session")):
    qcgflow.get(fresh.remote(-1))
    t = time.perf_counter()
    assert qcgflow.get([fresh.remote(i) for i in range(n)]) == list(range(n))
    out["P1C"] = time.perf_counter() - t
    qcgflow.get([noop.remote(i) for i in range(100)])
    if profile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    cpu = cpu_by_role()
    t = time.perf_counter()
    refs = [noop.remote(i) for i in range(n)]
    assert qcgflow.get(refs) == list(range(n))
    out["P1"] = time.perf_counter() - t
    cpu_per_task("P1", cpu, n)
    cpu = cpu_by_role()
    t = time.perf_counter()
    ref = noop.remote(0)
    for _ in range(m - 1):
        ref = noop.remote(ref)
    assert qcgflow.get(ref) == 0
    out["P3"] = time.perf_counter() - t
    cpu_per_task("P3", cpu, m)
    t = time.perf_counter()
    root = noop.remote(0)
    assert qcgflow.get(gather.remote(*[noop.remote(i, root) for i in range(k)])) == k
    out["P4"] = time.perf_counter() - t
    if profile:
        prof.disable()
        prof.dump_stats(profile)
if big:
    run_dir = os.path.join(wd, "map")
    t = time.perf_counter()
    assert qcgflow.run(gather_list.bind(noop.map(range(big))), nodes=2, wd=run_dir) == big
    out["MAP"] = time.perf_counter() - t
    files = 0
    for _, dirs, names in os.walk(run_dir):
        files += len(dirs) + len(names)
    out["MAP_files"] = files
    out["MAP_files_qcgflow"] = sum(len(d) + len(f) for _, d, f in
                                   os.walk(os.path.join(run_dir, ".qcgflow")))
print(json.dumps(out))
"""


def _run(command, env=None, timeout=1800):
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          start_new_session=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return None, "exit %d: %s" % (proc.returncode, tail)
    return json.loads(proc.stdout.strip().splitlines()[-1]), None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--fan", type=int, default=1000)
    parser.add_argument("--map", type=int, default=20000, help="0: skip MAP")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ray-python", default=DEFAULT_RAY)
    parser.add_argument("--only", choices=("qcgflow", "ray"), default=None)
    parser.add_argument("--dir", default=None, help="parent of the run directories "
                        "(default: $TMPDIR; use a directory on disk, not tmpfs)")
    parser.add_argument("--profile", default="", help="cProfile output of qcgflow's client")
    parser.add_argument("--json", default=None)
    parser.add_argument("--before", default=None, metavar="SRC",
                        help="also run qcgflow from this source tree (e.g. a `git archive` "
                        "of an earlier commit) as the system 'before', alternated with the rest")
    args = parser.parse_args()
    sizes = [str(args.tasks), str(args.chain), str(args.fan), str(args.map)]
    systems = ["qcgflow", "ray"] if args.only is None else [args.only]
    if args.before:
        systems.insert(1, "before")
    if "ray" in systems and not os.path.exists(args.ray_python):
        print("no Ray interpreter at %s: python3 -m venv /tmp/qcgflow-bench/venv-ray && "
              "/tmp/qcgflow-bench/venv-ray/bin/pip install ray" % args.ray_python)
        systems.remove("ray")
    compile_tree(REPO)  # .pyc files on both sides (_trees.py): MAP includes starts
    if args.before:
        compile_tree(os.path.abspath(args.before))
    runs = {system: [] for system in systems}
    problems = []
    root = tempfile.mkdtemp(prefix="qcgflow-remote-bench-", dir=args.dir)
    try:
        for repeat in range(args.repeat):
            order = systems if repeat % 2 == 0 else list(reversed(systems))
            for system in order:
                wd = tempfile.mkdtemp(prefix="%s-%d-" % (system, repeat), dir=root)
                if system == "ray":
                    # Ray's own temp dir (/tmp/ray): a deeper one overflows its socket paths
                    out, why = _run([args.ray_python, "-c", RAY_SCRIPT] + sizes)
                else:
                    profile = args.profile if repeat == 0 and system == "qcgflow" else ""
                    source = REPO if system == "qcgflow" else os.path.abspath(args.before)
                    out, why = _run([sys.executable, "-c", QCGFLOW_SCRIPT, source] + sizes
                                    + [wd, profile])
                if out is None:
                    problems.append("%s repeat %d: %s" % (system, repeat, why))
                else:
                    runs[system].append(out)
                    print("repeat %d %-8s %s" % (repeat, system, json.dumps(
                        {key: round(value, 3) for key, value in out.items()})), flush=True)
                shutil.rmtree(wd, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _report(args, runs, problems)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"args": vars(args), "runs": runs, "problems": problems}, handle,
                      indent=1)
    return 1 if problems else 0


def _stats(values):
    if not values:
        return None, "-"
    return statistics.median(values), "%.3f [%.3f-%.3f]" % (
        statistics.median(values), min(values), max(values))


def _report(args, runs, problems) -> None:
    goals = {"P1C": None, "P1": 0.5, "P3": 0.25, "P4": 0.5, "MAP": 0.25}
    labels = {"P1C": "P1C the same, not warmed [s]",
              "P1": "P1 %d x .remote + get [s]" % args.tasks,
              "P3": "P3 chain of %d [s]" % args.chain,
              "P4": "P4 1->%d->1 [s]" % args.fan,
              "MAP": "MAP %d via qcgflow.run [s]" % args.map}
    columns = [name for name in ("qcgflow", "before", "ray") if name in runs]
    print("\n%-30s " % "workload" + " ".join("%-26s" % c for c in columns)
          + " %7s %s" % ("q/ray", "goal") + ("  before/ray" if "before" in runs else ""))
    for key in ("P1C", "P1", "P3", "P4", "MAP"):
        if key == "MAP" and not args.map:
            continue
        medians, texts = {}, []
        for column in columns:
            median, text = _stats([run[key] for run in runs[column] if key in run])
            medians[column] = median
            texts.append("%-26s" % text)
        q, r = medians.get("qcgflow"), medians.get("ray")
        ratio = "-" if q is None or r is None else "%.2fx" % (q / r)
        goal = goals[key]
        verdict = "" if q is None or r is None or goal is None else (
            "PASS" if q / r <= goal else "FAIL")
        line = "%-30s " % labels[key] + " ".join(texts) + " %7s %s %s" % (
            ratio, "       -" if goal is None else "<= %.2fx" % goal, verdict)
        b = medians.get("before")
        if b is not None and r is not None:
            line += "  %.2fx" % (b / r)
        print(line)
    for column in ("qcgflow", "before"):
        for key in ("P1", "P3"):
            cells = []
            for role in ("client", "service", "workers"):
                values = [run["%s_cpu_%s" % (key, role)] for run in runs.get(column, ())
                          if "%s_cpu_%s" % (key, role) in run]
                if values:
                    cells.append("%s %.3f-%.3f" % (role, min(values), max(values)))
            if cells:
                print("%-8s %s CPU per task [ms]: %s" % (column, key, ", ".join(cells)))
    files = [run["MAP_files"] for run in runs.get("qcgflow", ()) if "MAP_files" in run]
    if files:
        inner = [run["MAP_files_qcgflow"] for run in runs["qcgflow"]]
        print("MAP files left in the run directory: %s (of which .qcgflow/: %s); goal <= 200"
              % (files, inner))
    before = [run["MAP_files"] for run in runs.get("before", ()) if "MAP_files" in run]
    if before:
        print("MAP files left by 'before': %s" % before)
    for problem in problems:
        print("PROBLEM: %s" % problem)


if __name__ == "__main__":
    sys.exit(main())
