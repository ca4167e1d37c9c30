#!/usr/bin/env python3
"""Files a run leaves behind, and its wall time: a workflow-file sweep and a Python map.

    python benchmarks/files_bench.py [--n 50000] [--map 20000] [--nodes 2] [--repeat 2]
        [--src DIR ...] [--tmp DIR] [--json OUT]

Cases, each in a fresh directory under --tmp (the VM's disk by default, not tmpfs):

* ``sweep``: ``qcgflow run sweep.yaml --wd DIR --nodes K``, one task ``exec: /bin/true``
  with ``foreach: {i: {range: [0, N]}}`` (issue 19's 50,000-iteration sweep);
* ``map``: ``qcgflow.run(noop.map(range(M)), wd=DIR)`` in a fresh interpreter (issue 19's
  20,000-element map; ``--map 0`` skips it).

Files: every file under DIR afterwards (service working files, journal, call and result
files included), split into task stdout/stderr files and the rest. Wall: the whole
command, service start included. Each ``--src`` is a qcgflow source tree (the code run,
put first on PYTHONPATH); with several (before / after a change), the cases alternate
between them for ``--repeat`` rounds so that the machine's drift hits both alike.
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

MAP_SCRIPT = """
import sys
import qcgflow

@qcgflow.task
def noop(x):
    return x

if __name__ == "__main__":
    values = qcgflow.run(noop.map(range(int(sys.argv[2]))), wd=sys.argv[1], nodes=sys.argv[3])
    assert values == list(range(int(sys.argv[2])))
"""


def count(top: str):
    """(all files, stdout/stderr files of tasks) under ``top``."""
    total = streams = 0
    for _, _, names in os.walk(top):
        total += len(names)
        streams += sum(1 for name in names if name != "qcgflow-service.out" and (
            name.endswith((".out", ".err")) or name.startswith(("stdout", "stderr"))))
    return total, streams


def timed(command, env, cwd, timeout):
    start = time.monotonic()
    result = subprocess.run(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    wall = time.monotonic() - start
    err = result.stderr.decode(errors="replace").strip().splitlines()
    return result.returncode, wall, err[-1] if err else ""


def sweep(src, n, nodes, top, timeout):
    path = os.path.join(top, "sweep.yaml")
    with open(path, "w") as handle:
        handle.write("name: sweep\ntasks:\n  t:\n    exec: /bin/true\n"
                     "    foreach:\n      i: {range: [0, %d]}\n" % n)
    wd = os.path.join(top, "wd")
    code, wall, err = timed([sys.executable, "-m", "qcgflow.cli", "run", path, "--wd", wd,
                             "--nodes", nodes, "--quiet"], _env(src), top, timeout)
    return (code, wall, err) + count(wd)


def python_map(src, n, nodes, top, timeout):
    path = os.path.join(top, "prog.py")
    with open(path, "w") as handle:
        handle.write(MAP_SCRIPT)
    wd = os.path.join(top, "wd")
    code, wall, err = timed([sys.executable, path, wd, str(n), nodes], _env(src), top,
                            timeout)
    return (code, wall, err) + count(wd)


def _env(src):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50000, help="sweep iterations (0: skip)")
    parser.add_argument("--map", type=int, default=20000, help="map elements (0: skip)")
    parser.add_argument("--nodes", default="2")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--src", nargs="+", default=[os.path.dirname(HERE)])
    parser.add_argument("--tmp", default=None, help="where runs go (default: the temporary directory, /tmp: the VM's disk here)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json")
    args = parser.parse_args()
    cases = [(name, fn, size) for name, fn, size in (("sweep", sweep, args.n),
                                                      ("map", python_map, args.map)) if size]
    rows = []
    print("%-6s %7s %-28s %4s %8s %8s %8s  %s" % ("case", "N", "src", "exit", "wall",
                                                "files", "std*", "last stderr line"),
          flush=True)
    for _ in range(args.repeat):
        for name, fn, size in cases:
            for src in args.src:
                top = tempfile.mkdtemp(prefix="filesbench-", dir=args.tmp)
                try:
                    code, wall, err, files, streams = fn(os.path.abspath(src), size,
                                                         args.nodes, top, args.timeout)
                finally:
                    shutil.rmtree(top, ignore_errors=True)
                rows.append({"case": name, "n": size, "src": src, "exit": code,
                             "wall_s": wall, "files": files, "stream_files": streams})
                print("%-6s %7d %-28s %4s %7.1fs %8d %8d  %s" % (
                    name, size, src[-28:], code, wall, files, streams, err[:50]), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
