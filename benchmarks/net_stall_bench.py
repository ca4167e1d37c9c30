#!/usr/bin/env python3
"""Request-socket throughput for good clients while bad peers hold connections (issue 17).

    python benchmarks/net_stall_bench.py [--requests 3000] [--repeat 12] [--holders 10]
                                         [--address-opts "--net-address 127.0.0.1"]
                                         [--conditions holders,garbage]
                                         [--json OUT]

One ``qcgflow service --net`` (default endpoint: ipc:// in an owner-only directory;
``--address-opts`` for TCP, then the client uses the CURVE keys of the ready line).
A good client (one REQ socket) sends ``--requests`` ``jobStatus`` requests back to back;
the rate (requests/s) is measured in three conditions, in short blocks interleaved
``--repeat`` times in a shuffled order, so that the shared machine's noise hits all of
them alike; the service's own CPU time per request is reported too (less sensitive to
other load on the machine):

* ``undisturbed``: nobody else is connected;
* ``holders``: ``--holders`` raw connections each sent a valid ZMTP handshake and the
  first bytes of a message that never ends, and stay open the whole time (what froze
  the old REP socket);
* ``garbage``: as many connections that sent 4 KiB of seeded random bytes and stay open.

The result is the median rate (and CPU per request) per condition and its ratio to
``undisturbed`` (goal: within 10%). A bad peer that floods requests is not measured here: it competes for the
same CPU, which no socket type can hide.
"""

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import zmq

SERVICE = [sys.executable, "-m", "qcgflow.cli", "service"]


def start_service(wd: str, opts):
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(SERVICE + ["--net", "--nodes", "2", "--wd", wd, "--ready-fd",
                                       str(write_fd)] + list(opts),
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(write_fd)
    with os.fdopen(read_fd) as ready:
        line = ready.readline()
    if not line:
        proc.wait(10)
        sys.exit("the service did not start")
    return proc, json.loads(line)


def client_socket(context, ready):
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    if ready.get("keys_dir"):
        keys = [open(os.path.join(ready["keys_dir"], name), "rb").read().strip()
                for name in ("server.key", "client.key", "client.key_secret")]
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = keys
    sock.connect(ready["address"])
    return sock


def raw_peer(address: str) -> socket.socket:
    if address.startswith("ipc://"):
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        peer.connect(address[len("ipc://"):])
        return peer
    host, port = address[len("tcp://"):].rsplit(":", 1)
    return socket.create_connection((host, int(port)))


def half_message() -> bytes:
    greeting = (b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00")
                + b"\x00" * 32)
    body = b"\x05READY\x0bSocket-Type" + struct.pack(">I", 3) + b"REQ"
    return greeting + b"\x04" + bytes([len(body)]) + body + b"\x01\x00" + b"\x00\x40{{{"


def measure(sock, count: int) -> float:
    request = b'{"request": "jobStatus", "jobNames": ["a"]}'
    for _ in range(50):  # warm-up
        sock.send(request)
        sock.recv()
    start = time.perf_counter()
    for _ in range(count):
        sock.send(request)
        sock.recv()
    return count / (time.perf_counter() - start)


def _cpu_reader(pid: int):
    """Seconds of CPU (user + system) the process has used so far, all threads."""
    ticks = os.sysconf("SC_CLK_TCK")

    def read() -> float:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    return read


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=12)
    parser.add_argument("--holders", type=int, default=10)
    parser.add_argument("--address-opts", default="")
    parser.add_argument("--conditions", default="holders,garbage",
                        help="bad-peer conditions measured against undisturbed")
    parser.add_argument("--json")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="qcgflow-netbench-")
    proc, ready = start_service(os.path.join(work, "wd"), shlex.split(args.address_opts))
    context = zmq.Context()
    rates = {name: [] for name in ["undisturbed"] + args.conditions.split(",")}
    cpu = {name: [] for name in rates}
    rng = random.Random(17)
    service_times = _cpu_reader(proc.pid)
    try:
        sock = client_socket(context, ready)
        sock.send(json.dumps({"request": "submit", "jobs": [
            {"name": "a", "execution": {"exec": "/bin/true"}}]}).encode())
        sock.recv()
        for _ in range(args.repeat):
            order = list(rates)
            rng.shuffle(order)
            for condition in order:
                peers = []
                if condition != "undisturbed":
                    for _ in range(args.holders):
                        peer = raw_peer(ready["address"])
                        peer.sendall(half_message() if condition == "holders" else
                                     bytes(rng.getrandbits(8) for _ in range(4096)))
                        peers.append(peer)
                time.sleep(0.2)  # let the service take the bytes in (same pause for all)
                before = service_times()
                rates[condition].append(measure(sock, args.requests))
                cpu[condition].append((service_times() - before) / (args.requests + 50) * 1e6)
                for peer in peers:
                    peer.close()
        sock.close()
    finally:
        context.destroy(linger=0)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(rates["undisturbed"])
    base_cpu = statistics.median(cpu["undisturbed"])
    summary = {name: {"median_rps": round(statistics.median(values), 1),
                      "ratio": round(statistics.median(values) / base, 3),
                      "cpu_us_per_request": round(statistics.median(cpu[name]), 1),
                      "cpu_ratio": round(statistics.median(cpu[name]) / base_cpu, 3),
                      "runs": [round(v, 1) for v in values]}
               for name, values in rates.items()}
    print("endpoint %s, %d requests x %d repeats, %d bad peers" % (
        ready["address"].split("://")[0], args.requests, args.repeat, args.holders))
    for name, item in summary.items():
        print("  %-12s %8.1f req/s  x%.3f of undisturbed   service CPU %6.1f us/request "
              "x%.3f" % (name, item["median_rps"], item["ratio"], item["cpu_us_per_request"],
                         item["cpu_ratio"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"address": ready["address"], "summary": summary}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
