"""Python-task workloads of ``qcgflow.run``, with and without warm workers, beside Ray.

    python benchmarks/graph_bench.py [--ray-python /tmp/qcgflow-bench/venv-ray/bin/python]
                                     [--tasks 2000] [--chain 200] [--fan 1000] [--repeat 1]
                                     [--dir DIR] [--no-cold]

Workloads (no-op Python functions, 2 cores):

* map:   one ``@qcgflow.task`` mapped over N elements, then gathered by one task;
* chain: M dependent tasks (each takes its predecessor's result); per hop = wall / M;
* fan:   1 -> K -> 1 (a root task, K tasks mapped that depend on it, one gathering task).

"run" is the wall time of one ``qcgflow.run`` call from the graph to the results,
including the start and stop of the local service (the start of a one-task run,
``single``, is printed too). "session" is measured as Ray is: in a session started
(``qcgflow.init``) and warmed with 100 no-op tasks outside the timing, the graph submitted
at once and gathered (``qcgflow.get``). "cold" runs with ``--disable-warm-workers`` (one interpreter
per task). Ray runs in its own interpreter (``--ray-python``; ``python3 -m venv
/tmp/qcgflow-bench/venv-ray && /tmp/qcgflow-bench/venv-ray/bin/pip install ray``),
``ray.init(num_cpus=2)`` outside the timing, remote no-op functions.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import qcgflow  # noqa: E402

NODES = 2
DEFAULT_RAY = "/tmp/qcgflow-bench/venv-ray/bin/python"

RAY_SCRIPT = r"""
import json, sys, time
import ray
n, m, k = (int(x) for x in sys.argv[1:4])
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

@ray.remote
def noop(x, *rest):
    return x

@ray.remote
def gather(*xs):
    return len(xs)

ray.get([noop.remote(i) for i in range(100)])  # warm the workers, as a real run would be
out = {}
t = time.perf_counter()
ray.get(gather.remote(*[noop.remote(i) for i in range(n)]))
out["map"] = time.perf_counter() - t
t = time.perf_counter()
ref = noop.remote(0)
for _ in range(m - 1):
    ref = noop.remote(ref)
ray.get(ref)
out["chain"] = time.perf_counter() - t
t = time.perf_counter()
root = noop.remote(0)
ray.get(gather.remote(*[noop.remote(i, root) for i in range(k)]))
out["fan"] = time.perf_counter() - t
print(json.dumps(out))
ray.shutdown()
"""


@qcgflow.task
def noop(x, *rest):
    return x


@qcgflow.task
def gather(values):
    return len(values)


def _chain(m: int):
    ref = noop.bind(0)
    for _ in range(m - 1):
        ref = noop.bind(ref)
    return ref


def _graphs(n: int, m: int, k: int):
    """Builders of new graphs (a session runs a node it has seen only once)."""
    return {
        "single": lambda: noop.bind(0),
        "map": lambda: gather.bind(noop.map(range(n))),
        "chain": lambda: _chain(m),
        "fan": lambda: gather.bind(noop.map(range(k), noop.bind(0))),
    }


class _ColdServices:
    """Adds ``--disable-warm-workers`` to the service command lines started meanwhile."""

    def __enter__(self):
        self._popen = subprocess.Popen
        original = self._popen

        def popen(command, *args, **kwargs):
            if isinstance(command, list) and "service" in command and (
                    "qcgflow.runtime" in command or "qcgflow.cli" in command):
                command = command + ["--disable-warm-workers"]
            return original(command, *args, **kwargs)
        subprocess.Popen = popen
        return self

    def __exit__(self, *exc):
        subprocess.Popen = self._popen


def qcgflow_times(n: int, m: int, k: int, warm: bool, repeat: int, root: str):
    results = {}
    for name, build in _graphs(n, m, k).items():
        best = None
        for _ in range(repeat):
            target = build()
            wd = tempfile.mkdtemp(prefix="run-", dir=root)  # removed at the very end
            if warm:
                t = time.perf_counter()
                qcgflow.run(target, nodes=NODES, wd=wd)
                took = time.perf_counter() - t
            else:
                with _ColdServices():
                    t = time.perf_counter()
                    qcgflow.run(target, nodes=NODES, wd=wd)
                    took = time.perf_counter() - t
            best = took if best is None else min(best, took)
        results[name] = best
    return results


def session_times(n: int, m: int, k: int, repeat: int, root: str):
    """As Ray is measured: a session started (``qcgflow.init``) and warmed with 100 no-op
    tasks outside the timing; each workload is submitted (``qcgflow.session.dynamic.submit``, the
    whole graph at once) and gathered (``qcgflow.get``) in it."""
    from qcgflow.session import dynamic
    results = {}
    wd = tempfile.mkdtemp(prefix="session-", dir=root)
    with qcgflow.init(nodes=NODES, wd=wd):
        qcgflow.get(dynamic.submit(gather.bind(noop.map(range(100)))))
        for name, build in _graphs(n, m, k).items():
            if name == "single":
                continue
            best = None
            for _ in range(repeat):
                target = build()
                t = time.perf_counter()
                qcgflow.get(dynamic.submit(target))
                took = time.perf_counter() - t
                best = took if best is None else min(best, took)
            results[name] = best
    return results


def ray_times(python: str, n: int, m: int, k: int):
    if not os.path.exists(python):
        return None, "no Ray interpreter at %s" % python
    proc = subprocess.run([python, "-c", RAY_SCRIPT, str(n), str(m), str(k)],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return None, "Ray failed: %s" % proc.stderr.strip().splitlines()[-1:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), None


def _create_cost(root: str, count: int = 300) -> float:
    """Microseconds to create one empty file under ``root`` now (a task creates three:
    stdout, stderr and its result), printed so that a slow file system shows."""
    probe = tempfile.mkdtemp(prefix="probe-", dir=root)
    started = time.perf_counter()
    for i in range(count):
        os.close(os.open(os.path.join(probe, "f%d" % i), os.O_WRONLY | os.O_CREAT, 0o644))
    return (time.perf_counter() - started) / count * 1e6


def _fs_type(path: str) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts), or "?"."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) > 2 and path.startswith(fields[1].rstrip("/") + "/") \
                        and len(fields[1]) > len(best):
                    best, kind = fields[1], fields[2]
    except OSError:
        pass
    return kind


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--fan", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--ray-python", default=DEFAULT_RAY)
    parser.add_argument("--no-cold", action="store_true", help="skip the runs without workers")
    parser.add_argument("--dir", default=None,
                        help="where the runs' working directories go (default: $TMPDIR)")
    args = parser.parse_args()
    n, m, k = args.tasks, args.chain, args.fan
    # Nothing is deleted until every timing is done: on ext4 without a journal (as on this
    # VM) a file created within minutes after many were deleted costs ~10x more (the inode
    # allocator skips recently deleted inodes, reading each one's deletion time), which
    # would make one workload pay for the clean-up of the one before. Run it again only
    # after a few minutes, or look at the create cost it prints.
    root = tempfile.mkdtemp(prefix="qcgflow-bench-", dir=args.dir)
    try:
        create_before = _create_cost(root)
        session = session_times(n, m, k, args.repeat, root)
        warm = qcgflow_times(n, m, k, True, args.repeat, root)
        cold = None if args.no_cold else qcgflow_times(n, m, k, False, args.repeat, root)
        create_after = _create_cost(root)
        ray, why = ray_times(args.ray_python, n, m, k)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("working directories under %s (%s); creating a file there took %.0f us before "
          "the timings, %.0f us after" % (os.path.dirname(root), _fs_type(root), create_before,
                                          create_after))
    print("qcgflow one-task run (service start + stop): warm %.3f s%s"
          % (warm["single"], "" if cold is None else ", cold %.3f s" % cold["single"]))
    rows = [("map %d + gather" % n, "map", 1), ("chain %d (per hop, ms)" % m, "chain", m),
            ("fan 1->%d->1" % k, "fan", 1)]
    print("run = qcgflow.run (service start+stop included); session = in a started, warmed "
          "session (as Ray)")
    print("%-26s %9s %9s %9s %9s %10s %10s" % ("workload", "run", "cold", "session", "ray",
                                                "run/ray", "session/ray"))

    def cell(value):
        return "-" if value is None else "%.3f" % value

    def ratio(a, b):
        return "-" if a is None or b is None else "%.2f" % (a / b)
    for label, key, per in rows:
        scale = 1000.0 / per if per > 1 else 1.0
        w = warm[key] * scale
        c = None if cold is None else cold[key] * scale
        s = session[key] * scale
        r = None if ray is None else ray[key] * scale
        print("%-26s %9.3f %9s %9.3f %9s %10s %10s" % (label, w, cell(c), s, cell(r),
                                                       ratio(w, r), ratio(s, r)))
    if why:
        print("Ray: %s" % why)
    return 0


if __name__ == "__main__":
    sys.exit(main())
