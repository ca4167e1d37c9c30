"""The ``qcgflow`` command line.

Subcommands:
    service   run the pilot-job manager (QCG-PilotJob ``qcg-pm-service`` options)
"""

import sys
from typing import Optional, Sequence

USAGE = """usage: qcgflow [--version] COMMAND [ARGS]

commands:
  service   run the pilot-job manager on a requests file (qcg-pm-service options);
            'qcgflow service --help' lists them
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] == "--version":
        from . import __version__
        print("qcgflow %s" % __version__)
        return 0
    command, rest = args[0], args[1:]
    if command == "service":
        from .runtime.service import run_service
        return run_service(rest)
    print("qcgflow: unknown command '%s'\n%s" % (command, USAGE), file=sys.stderr, end="")
    return 2


if __name__ == "__main__":
    sys.exit(main())
