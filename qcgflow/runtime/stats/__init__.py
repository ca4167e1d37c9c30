"""Run statistics: what the service records while it runs and the tools that read it back.

::

    service side (imported by service.py, no plotting library):
      hooks.ServiceStats  --enable-rt-stats   Executor.exit_listeners -> rtstats.RtStatsRecorder
                                              -> <aux_dir>/rtstats.jsonl (batched writes)
                          --enable-proc-stats procstats.ProcessSampler (thread, psutil, ~1 s)
                                              -> <aux_dir>/ptrace_<host>_<date>_<pid>.log
                          --show-progress     progress.ProgressPrinter (event-loop timer)
                                              -> one line on stderr per second

    analysis side (``qcgflow report`` / ``qcgflow processes``, see cli.py):
      load.load_run(WD) -> Run (workdir.py: jobs.report + final_status.json + service.log + rtstats;
                                   parts.py: every service run after --resume, sweep values
                                   from the journal, whether the files are still partial)
        -> metrics (stats, launch-stats, rusage, efficiency; pure) -> text | JSON
        -> gantt (matplotlib, imported only there) -> PNG | PDF | SVG
      processes.load_processes(WD) -> tree | apps of one job
"""
