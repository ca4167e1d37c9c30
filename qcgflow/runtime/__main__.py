"""``python -m qcgflow.runtime service [OPTIONS]``: the runtime's own entry point.

The same service as ``qcgflow service`` (the same options, exit codes and messages), without
the graph side: nothing outside ``qcgflow.runtime`` is imported, and no module is run in
warm workers unless ``--warm-modules`` names it (``qcgflow service`` names the graph API's
runner). ``runtime/client/spawn.py`` starts services with this command.
"""

import sys
from typing import Optional, Sequence

USAGE = "usage: python -m qcgflow.runtime service [OPTIONS] ('service --help' lists them)\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["service"]:
        if args[:1] in (["-h"], ["--help"]):
            sys.stdout.write(USAGE)
            return 0
        sys.stderr.write("python -m qcgflow.runtime: %s\n%s" % (
            "unknown command '%s'" % args[0] if args else "no command", USAGE))
        return 2
    from .service import exit_process, run_service  # noqa: PLC0415 - not for --help
    status = run_service(args[1:])
    if argv is None:  # this process is the service: no teardown (exit_process)
        exit_process(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
