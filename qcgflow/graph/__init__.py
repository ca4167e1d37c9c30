"""Building task graphs, pure: options, ``@task``, shell/MPI commands, graph nodes and their content keys."""
