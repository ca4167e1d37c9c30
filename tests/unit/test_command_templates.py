"""CommandTemplates: an iteration's command from a template is what build_task builds."""

import pytest

from qcgflow.runtime.launch.environment import CommandTemplates, TaskContext, build_task
from qcgflow.runtime.protocol import parse_job
from qcgflow.runtime.resources import Allocation, NodeAllocation

from factories import SUBMIT_VARS, job_desc

BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/home/u"}
ONE = Allocation((NodeAllocation("n0", (1,)),))
OTHER = Allocation((NodeAllocation("n0", (0,)),))
TWO_NODES = Allocation((NodeAllocation("n1", (0, 1)), NodeAllocation("n2", (3,))))


def execution(**fields):
    return parse_job(job_desc("a", execution=fields), dict(SUBMIT_VARS)).execution


def built(execution_, allocation, step, slurm=False, index=None):
    ctx = TaskContext(name="a:%s" % index, index=index, value=None, allocation=allocation,
                      root_wd="/wd", step_id=step, slurm=slurm, aux_dir="/aux")
    return build_task(execution_, ctx, BASE_ENV)


def as_built(found):
    template, env = found
    return (template.argv, env, template.wd, template.stdin, template.stdout,
            template.stderr, template.node, template.cpus, template.files)


def fields(command):
    return (command.argv, command.env, command.wd, command.stdin, command.stdout,
            command.stderr, command.node, command.cpus, command.files)


@pytest.mark.parametrize("slurm", [False, True])
@pytest.mark.parametrize("spec", [
    {"exec": "/bin/true"},
    {"exec": "prog", "args": ["-x", "1"], "env": {"A": "b"}, "stdout": "out.txt",
     "stderr": "err.txt", "wd": "sub"},
    {"script": "echo hi", "model": "threads"},
    {"exec": "prog", "modules": ["gcc"], "venv": "venv"},
])
def test_every_iteration_gets_what_build_task_builds(spec, slurm):
    templates = CommandTemplates(BASE_ENV, "/wd", slurm=slurm, aux_dir="/aux")
    ex = execution(**spec)
    for step, allocation in [("job1", ONE), ("job2", OTHER), ("job3", ONE), ("job4", OTHER)]:
        found = templates.command(ex, allocation, step)
        assert found is not None
        assert as_built(found) == fields(built(ex, allocation, step, slurm))
        assert found[1]["QCG_PM_STEP_ID"] == step
    # each iteration has its own environment: changing one changes no other
    first = templates.command(ex, ONE, "job5")[1]
    first["X"] = "1"
    assert "X" not in templates.command(ex, ONE, "job6")[1]


@pytest.mark.parametrize("spec", [
    {"exec": "prog", "args": ["${it}"]},
    {"exec": "prog", "stdout": "out.${it}"},
    {"exec": "prog", "env": {"N": "${ncores}"}},
    {"script": "echo $it"},
    {"exec": "prog", "wd": "w$${it}"},
])
def test_an_execution_with_variables_is_always_built(spec):
    templates = CommandTemplates(BASE_ENV, "/wd")
    assert templates.command(execution(**spec), ONE, "job1") is None
    assert templates.command(execution(**spec), ONE, "job2") is None


def test_a_task_with_per_task_files_is_built_every_time():
    # a parallel task in Slurm mode gets a hostfile named after its step
    templates = CommandTemplates(BASE_ENV, "/wd", slurm=True, aux_dir="/aux")
    ex = execution(exec="prog")
    assert templates.command(ex, TWO_NODES, "job1") is None
    assert built(ex, TWO_NODES, "job1", slurm=True).files  # why: it has a file
    # the same execution on one core has none, but the execution stays untemplated
    assert templates.command(ex, ONE, "job2") is None


def test_the_cache_is_bounded():
    templates = CommandTemplates(BASE_ENV, "/wd", limit=4)
    executions = [execution(exec="prog%d" % i) for i in range(10)]
    for i, ex in enumerate(executions):
        for allocation in (ONE, OTHER):
            found = templates.command(ex, allocation, "job%d" % i)
            assert found[0].argv == ["prog%d" % i]
    assert templates._count <= 4 and len(templates._executions) <= 4


# --------------------------------------------------------------------------- Open MPI runs
# at the same time on one host must not share a session directory base (environment.py).

def test_openmpi_tasks_running_at_once_get_their_own_session_base():
    spec = execution(exec="prog", model="openmpi")
    bases = {built(spec, allocation, "s").env["OMPI_MCA_orte_tmpdir_base"]
             for allocation in (ONE, OTHER, TWO_NODES)}
    assert len(bases) == 3
    assert all(len(base) < 60 for base in bases)  # Open MPI makes sockets under it
    again = built(spec, ONE, "later").env["OMPI_MCA_orte_tmpdir_base"]
    assert again in bases  # the same core later: the same directory, reused


def test_a_session_base_the_task_sets_wins_and_other_models_get_none():
    own = execution(exec="prog", model="openmpi", env={"OMPI_MCA_orte_tmpdir_base": "/scratch/x"})
    assert built(own, ONE, "s").env["OMPI_MCA_orte_tmpdir_base"] == "/scratch/x"
    assert "OMPI_MCA_orte_tmpdir_base" not in built(execution(exec="prog"), ONE, "s").env
    assert "OMPI_MCA_orte_tmpdir_base" not in built(execution(exec="prog", model="intelmpi"),
                                                    TWO_NODES, "s", slurm=True).env
