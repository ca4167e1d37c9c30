"""Execution models and the task environment: command lines, variables, files, binding.

Pure functions only (no processes): launch/models.py and launch/environment.py.
"""

import pytest

from qcgflow.runtime.executor import Executor
from qcgflow.runtime.launch.environment import (TaskContext, build_task, hostfile_content,
                                                slurm_environment, tasks_per_node)
from qcgflow.runtime.launch.models import (ModelUnavailable, build_model, cpu_masks,
                                           machinefile, node_groups, rankfile)
from qcgflow.runtime.protocol import parse_job
from qcgflow.runtime.registry import Job
from qcgflow.runtime.resources import Allocation, NodeAllocation

from factories import SUBMIT_VARS, FakeLoop, job_desc

PROGRAM = ("./app", "x")


def alloc(*parts):
    """alloc(("n1", (0, 1)), ("n2", (1,))) -> Allocation."""
    return Allocation(tuple(NodeAllocation(node, tuple(cores)) for node, cores in parts))


TWO_BY_TWO = alloc(("n1", (0, 1)), ("n2", (0, 1)))
UNEVEN = alloc(("n1", (0, 1)), ("n2", (1,)))


def model(name, allocation=TWO_BY_TWO, slurm=True, **opts):
    return build_model(name, PROGRAM, allocation, slurm=slurm, model_opts=opts,
                       file_prefix="/aux/job7")


# =============================================================================== default, threads

@pytest.mark.parametrize("name", ["default", "threads", ""])
def test_single_process_models_run_the_program_itself(name):
    assert model(name).argv == PROGRAM


@pytest.mark.parametrize("name", ["default", "threads"])
def test_slurm_mode_binds_to_the_first_nodes_cores(name):
    assert model(name, alloc(("n2", (1,)), ("n1", (0, 1)))).cpus == (1,)


@pytest.mark.parametrize("name", ["default", "threads"])
def test_local_mode_does_not_bind(name):
    assert model(name, slurm=False).cpus is None


def test_threads_sets_omp_num_threads_to_the_first_nodes_cores():
    assert model("threads", UNEVEN).env == {"OMP_NUM_THREADS": "2"}


def test_default_sets_no_model_variables():
    assert model("default").env == {}


# =============================================================================== openmpi

def test_openmpi_slurm_command_line():
    assert model("openmpi").argv == ("mpirun", "--rankfile", "/aux/job7.rankfile", "-np", "4",
                                     "./app", "x")


def test_openmpi_rankfile_lists_every_core_in_allocation_order():
    assert rankfile(UNEVEN) == "rank 0=n1 slot=0\nrank 1=n1 slot=1\nrank 2=n2 slot=1\n"


def test_openmpi_slurm_writes_the_rankfile():
    assert model("openmpi", UNEVEN).files == (("/aux/job7.rankfile", rankfile(UNEVEN)),)


def test_openmpi_does_not_bind_mpirun_itself():
    assert model("openmpi").cpus is None


def test_openmpi_model_opts():
    command = model("openmpi", mpirun="/opt/ompi/bin/mpirun", mpirun_args=["--mca", "a", "1"])
    assert command.argv[:4] == ("/opt/ompi/bin/mpirun", "--mca", "a", "1")


def test_openmpi_local_command_line():
    assert model("openmpi", UNEVEN, slurm=False).argv == (
        "mpirun", "--oversubscribe", "-np", "3", "./app", "x")


def test_openmpi_local_writes_no_files():
    assert model("openmpi", slurm=False).files == ()


# =============================================================================== intelmpi

def test_intelmpi_slurm_command_line():
    assert model("intelmpi", UNEVEN).argv == (
        "mpirun", "-machinefile", "/aux/job7.machinefile",
        "-n", "2", "-env", "I_MPI_PIN_PROCESSOR_LIST", "0,1", "./app", "x", ":",
        "-n", "1", "-env", "I_MPI_PIN_PROCESSOR_LIST", "1", "./app", "x")


def test_intelmpi_machinefile():
    assert machinefile(UNEVEN) == "n1:2\nn2:1\n"


def test_intelmpi_slurm_files_and_env():
    command = model("intelmpi", UNEVEN)
    assert (command.files, command.env) == ((("/aux/job7.machinefile", "n1:2\nn2:1\n"),),
                                            {"I_MPI_PIN": "1"})


def test_intelmpi_global_args_come_before_the_segments():
    command = model("intelmpi", mpirun="mpiexec.hydra", mpirun_args=["-launcher", "ssh"])
    assert command.argv[:5] == ("mpiexec.hydra", "-launcher", "ssh", "-machinefile",
                                "/aux/job7.machinefile")


def test_intelmpi_local_command_line():
    assert model("intelmpi", UNEVEN, slurm=False).argv == ("mpirun", "-n", "3", "./app", "x")


# =============================================================================== srunmpi

def test_srunmpi_same_cores_on_every_node_is_one_srun():
    assert model("srunmpi").argv == (
        "srun", "-N", "2", "-n", "4", "--ntasks-per-node=2", "-w", "n1,n2", "--overlap",
        "--cpu-bind=mask_cpu:0x1,0x2", "./app", "x")


def test_srunmpi_different_cores_per_node_is_one_component_per_core_set():
    assert model("srunmpi", UNEVEN, mpirun_args=["--mpi=pmix"]).argv == (
        "srun", "-N", "1", "-n", "2", "--ntasks-per-node=2", "-w", "n1", "--overlap",
        "--cpu-bind=mask_cpu:0x1,0x2", "--mpi=pmix", "./app", "x", ":",
        "-N", "1", "-n", "1", "--ntasks-per-node=1", "-w", "n2", "--overlap",
        "--cpu-bind=mask_cpu:0x2", "--mpi=pmix", "./app", "x")


def test_srunmpi_mpirun_option_replaces_srun():
    assert model("srunmpi", mpirun="/opt/slurm/bin/srun").argv[0] == "/opt/slurm/bin/srun"


def test_srunmpi_is_not_bound_by_the_launcher():
    assert model("srunmpi").cpus is None


def test_srunmpi_needs_slurm():
    with pytest.raises(ModelUnavailable, match="^model srunmpi needs a Slurm allocation"):
        model("srunmpi", slurm=False)


@pytest.mark.parametrize("cores, masks", [((0,), "0x1"), ((0, 1), "0x1,0x2"),
                                          ((3, 8), "0x8,0x100")])
def test_cpu_masks(cores, masks):
    assert cpu_masks(cores) == masks


def test_node_groups_join_only_consecutive_equal_core_sets():
    allocation = alloc(("a", (0,)), ("b", (0,)), ("c", (1,)), ("d", (0,)))
    assert [[p.node for p in g] for g in node_groups(allocation)] == [["a", "b"], ["c"], ["d"]]


def test_unknown_model_is_a_bug():
    with pytest.raises(ValueError, match="unknown execution model 'mpich'"):
        model("mpich")


# =============================================================================== environment

@pytest.mark.parametrize("counts, text", [([2], "2"), ([2, 2], "2(x2)"), ([2, 2, 1], "2(x2),1"),
                                          ([1, 2, 2], "1,2(x2)"), ([1, 2, 1], "1,2,1")])
def test_tasks_per_node_uses_slurms_compressed_form(counts, text):
    assert tasks_per_node(counts) == text


def test_slurm_environment_of_an_uneven_allocation():
    assert slurm_environment(UNEVEN) == {
        "SLURM_NNODES": "2", "SLURM_JOB_NUM_NODES": "2", "SLURM_STEP_NUM_NODES": "2",
        "SLURM_NODELIST": "n1,n2", "SLURM_JOB_NODELIST": "n1,n2", "SLURM_STEP_NODELIST": "n1,n2",
        "SLURM_NPROCS": "3", "SLURM_NTASKS": "3", "SLURM_STEP_NUM_TASKS": "3",
        "SLURM_TASKS_PER_NODE": "2,1", "SLURM_STEP_TASKS_PER_NODE": "2,1",
        "SLURM_JOB_CPUS_PER_NODE": "2,1", "SLURM_OVERLAP": "1"}


def test_slurm_environment_has_ntasks_per_node_when_even():
    assert slurm_environment(TWO_BY_TWO)["SLURM_NTASKS_PER_NODE"] == "2"


def test_hostfile_has_one_line_per_core():
    assert hostfile_content(UNEVEN) == "n1\nn1\nn2\n"


def task(execution, allocation=UNEVEN, slurm=True, base_env=None, aux_dir="/aux"):
    spec = parse_job(job_desc("a", execution=execution), dict(SUBMIT_VARS))
    ctx = TaskContext(name="a", index=None, value=None, allocation=allocation,
                      root_wd="/wd", step_id="job7", slurm=slurm, aux_dir=aux_dir)
    return build_task(spec.execution, ctx, base_env or {})


def test_build_task_sets_slurm_variables_in_slurm_mode():
    env = task({"exec": "./app"}).env
    assert (env["SLURM_NODELIST"], env["SLURM_TASKS_PER_NODE"]) == ("n1,n2", "2,1")


def test_build_task_sets_no_slurm_variables_in_local_mode():
    assert not [k for k in task({"exec": "./app"}, slurm=False).env if k.startswith("SLURM")]


def test_build_task_names_the_hostfile_in_slurm_mode():
    command = task({"exec": "./app"})
    assert dict(command.files)[command.env["QCG_PM_HOSTFILE"]] == "n1\nn1\nn2\n"


def test_build_task_writes_no_hostfile_for_a_one_core_task():
    command = task({"exec": "./app"}, allocation=alloc(("n1", (1,))))
    assert ("QCG_PM_HOSTFILE" in command.env, command.files) == (False, ())


def test_build_task_writes_no_hostfile_in_local_mode():
    command = task({"exec": "./app"}, slurm=False)
    assert ("QCG_PM_HOSTFILE" in command.env, command.files) == (False, ())


@pytest.mark.parametrize("slurm", [True, False])
def test_build_task_sets_qcg_variables_in_both_modes(slurm):
    env = task({"exec": "./app"}, slurm=slurm).env
    assert {k: env[k] for k in ("QCG_PM_NODELIST", "QCG_PM_CPU_SET", "QCG_PM_TASKS_PER_NODE")} \
        == {"QCG_PM_NODELIST": "n1,n2", "QCG_PM_CPU_SET": "0,1,1", "QCG_PM_TASKS_PER_NODE": "2,1"}


def test_build_task_keeps_the_job_id():
    assert task({"exec": "./app"}, base_env={"SLURM_JOB_ID": "42"}).env["SLURM_JOB_ID"] == "42"


def test_build_task_drops_the_pilots_ntasks_per_node_on_an_uneven_allocation():
    assert "SLURM_NTASKS_PER_NODE" not in task({"exec": "./app"},
                                               base_env={"SLURM_NTASKS_PER_NODE": "2"}).env


def test_build_task_writes_hostfile_and_rankfile_in_the_aux_dir():
    files = dict(task({"exec": "./app", "model": "openmpi"}).files)
    assert sorted(files) == ["/aux/job7.hostfile", "/aux/job7.rankfile"]


def test_build_task_without_aux_dir_writes_dot_files_in_the_wd():
    files = dict(task({"exec": "./app"}, aux_dir=None).files)
    assert list(files) == ["/wd/.job7.hostfile"]


def test_build_task_binds_default_model_in_slurm_mode():
    command = task({"exec": "./app"})
    assert (command.node, command.cpus) == ("n1", (0, 1))


def test_job_env_overrides_model_env():
    env = task({"exec": "./app", "model": "threads", "env": {"OMP_NUM_THREADS": "1"}}).env
    assert env["OMP_NUM_THREADS"] == "1"


def test_modules_wrap_the_mpirun_command():
    argv = task({"exec": "./app", "model": "openmpi", "modules": ["ompi"]}).argv
    assert (argv[0], argv[3:5]) == ("/bin/bash", ["qcgflow-task", "mpirun"])


def test_venv_wraps_the_srun_command():
    argv = task({"exec": "./app", "model": "srunmpi", "venv": "/v"}).argv
    assert argv[3:5] == ["qcgflow-task", "srun"]


def test_script_with_an_mpi_model_runs_the_script_per_rank():
    argv = task({"script": "echo hi", "model": "openmpi"}, slurm=False).argv
    assert argv[-3:] == ["/bin/bash", "-c", "echo hi"]


def test_script_with_modules_and_default_model_stays_one_shell():
    argv = task({"script": "echo hi", "modules": ["m"]}).argv
    assert (len(argv), argv[2].endswith("\necho hi")) == (3, True)


def test_execution_variables_reach_mpi_arguments():
    argv = task({"exec": "./app", "args": ["${ncores}"], "model": "openmpi"}).argv
    assert argv[-2:] == ["./app", "3"]


def test_srunmpi_in_local_mode_raises_model_unavailable():
    with pytest.raises(ModelUnavailable):
        task({"exec": "./app", "model": "srunmpi"}, slurm=False)


def test_executor_turns_an_unavailable_model_into_a_failed_outcome(tmp_path):
    """The Executor never reaches the launcher; on_done gets FAILED with the reason."""
    done = []
    loop = FakeLoop()
    executor = Executor(loop, launcher=None, root_wd=str(tmp_path), base_env={},
                        on_executing=None, on_done=lambda *args: done.append(args[3]))
    spec = parse_job(job_desc("a", execution={"exec": "./app", "model": "srunmpi"}),
                     dict(SUBMIT_VARS))
    executor.start(Job(spec, 0), None, alloc(("n0", (0,))))
    loop.run_pending()
    assert [(o.state.value, o.message) for o in done] == [
        ("FAILED", "model srunmpi needs a Slurm allocation (the service runs in local mode)")]
