"""What the tests of every directory share: starting services, waiting, processes.

Import it as ``support`` (``from support.services import NetService``): pytest puts
``tests/`` on ``sys.path`` (``pythonpath = ["tests"]`` in pyproject.toml), so the name is
the same from every test directory and no test edits ``sys.path``. See tests/README.md.

* ``support.eventually``: ``eventually(predicate, timeout, interval, message)``, the one
  deadline poll (fails saying what was awaited).
* ``support.processes``: the child environment, leftover-process checks (the
  ``no_leftovers`` fixture), process trees, killing.
* ``support.services``: ``NetService`` (``--net``), file-interface runs
  (``run_service``, ``start_service``, ``run_driver``), the ``qcgflow`` command line.
* ``support.results``: a file-interface run read back (replies, jobs.report, files).
* ``support.jobs``: job descriptions and requests in the wire format.
* ``support.golden``: golden-file comparison; ``support.mpi``: an MPI hello program;
  ``support.slurm``: the dev Slurm cluster (tests/slurm, and adversarial's Slurm case).

Area-specific helpers stay in their directory's ``*_harness.py``; nothing here is
written twice there.
"""
