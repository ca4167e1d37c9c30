"""Unit tests of the two variable substitution stages (qcgflow.runtime.variables).

Submit stage: rcnt, uniq, sname, date, time, dateTime, jname. Execution stage: it, itval,
root_wd, ncores, nnodes, nlist. ``$$`` becomes ``$`` in each stage, as upstream's two
``string.Template(...).safe_substitute`` passes (manager.py ``_replace_variables`` at submit,
executionjob.py ``_replace_job_variables`` at execution). Unknown variables are left for the
shell.
"""

import pytest

from factories import SUBMIT_VARS, job_desc
from qcgflow.runtime.launch.environment import TaskContext, build_task, execution_variables
from qcgflow.runtime.protocol import parse_job
from qcgflow.runtime.resources import Allocation, NodeAllocation
from qcgflow.runtime.variables import (EXECUTION_VARIABLES, SUBMIT_VARIABLES, escape,
                                       escape_stage, has_variables, substitute, substitute_all)

VALUES = {"x": "X", "long_name": "L", "n1": "N"}


# =============================================================================== substitute

@pytest.mark.parametrize("text, expected", [
    ("plain", "plain"),
    ("${x}", "X"),
    ("$x", "X"),
    ("${ x }", "${ x }"),  # spaces: text, as upstream's string.Template (placeholders.py)
    ("a${x}b", "aXb"),
    ("${x}${x}", "XX"),
    ("${long_name}", "L"),
    ("$long_name", "L"),
    ("$n1", "N"),
    ("${unknown}", "${unknown}"),
    ("$unknown", "$unknown"),
    ("${HOME}/x", "${HOME}/x"),
    ("$", "$"),
    ("a$", "a$"),
    ("${}", "${}"),
    ("$1", "$1"),
    ("${x", "${x"),
])
def test_substitute_replaces_known_and_keeps_unknown(text, expected):
    assert substitute(text, VALUES, unescape=True) == expected


@pytest.mark.parametrize("text, unescape, expected", [
    ("$$", True, "$"),
    ("$$", False, "$$"),
    ("$${x}", True, "${x}"),
    ("$${x}", False, "$${x}"),
    ("$$$x", True, "$X"),
    ("$$$x", False, "$$X"),
    ("cost: $$5", True, "cost: $5"),
    ("$$$$", True, "$$"),
    ("$$$$", False, "$$$$"),
])
def test_dollar_escape(text, unescape, expected):
    assert substitute(text, VALUES, unescape=unescape) == expected


def test_escape_survives_two_stages():
    """``$$$$x`` is ``$$x`` after the submit stage and the literal ``$x`` after execution;
    ``escape`` writes any text so."""
    first = substitute("$$$$x", {"x": "submit"}, unescape=True)
    assert (first, substitute(first, {"x": "execution"}, unescape=True)) == ("$$x", "$x")
    text = "a$b ${x} $$ $"
    assert substitute(substitute(escape(text), VALUES, unescape=True), VALUES,
                      unescape=True) == text


def test_double_dollar_defers_a_variable_to_the_execution_stage():
    """Upstream's idiom: ``$${it}`` is ``${it}`` after the submit stage, then the index."""
    first = substitute("out_$${it}", {"x": "submit"}, unescape=True)
    assert (first, substitute(first, {"it": "4"}, unescape=True)) == ("out_${it}", "out_4")


def test_escape_stage_is_undone_by_one_stage():
    obj = {"k$": ["$${it}", {"e": "$$$$x"}, 5], "s": "$"}
    assert substitute_all(escape_stage(obj), {"it": "9"}, unescape=True) == obj


def test_substitute_all_walks_lists_and_dicts_but_not_keys():
    obj = {"${x}": ["${x}", {"k": "$x"}, 5, None, True], "n": 3}
    assert substitute_all(obj, VALUES, unescape=True) == {
        "${x}": ["X", {"k": "X"}, 5, None, True], "n": 3}


def test_substitute_all_returns_new_objects():
    obj = {"a": ["${x}"]}
    substitute_all(obj, VALUES, unescape=True)
    assert obj == {"a": ["${x}"]}


@pytest.mark.parametrize("text, expected", [
    ("plain", False),
    ("$$", False),
    ("$$x", False),
    ("${x}", True),
    ("$x", True),
    ("a$$b${c}", True),
    ("$", False),
])
def test_has_variables(text, expected):
    assert has_variables(text) is expected


def test_variable_sets():
    assert (SUBMIT_VARIABLES, EXECUTION_VARIABLES) == (
        frozenset({"rcnt", "uniq", "sname", "date", "time", "dateTime", "jname"}),
        frozenset({"it", "itval", "root_wd", "ncores", "nnodes", "nlist"}))


# =============================================================================== submit stage

def submitted_args(*args, name="job"):
    desc = job_desc(name, execution={"exec": "/bin/echo", "args": list(args)})
    return parse_job(desc, dict(SUBMIT_VARS)).execution.args


@pytest.mark.parametrize("variable, value", [
    ("rcnt", "7"),
    ("uniq", "0123abcd"),
    ("sname", "local"),
    ("date", "2024-01-02"),
    ("time", "03-04-05"),
    ("dateTime", "2024-01-02_03-04-05"),
    ("jname", "job"),
])
def test_submit_variables_are_substituted(variable, value):
    assert submitted_args("${%s}" % variable, "$%s" % variable) == (value, value)


def test_jname_is_the_final_name_after_substitution():
    assert submitted_args("${jname}", name="job_${rcnt}") == ("job_7",)


def test_submit_variables_in_the_name():
    desc = job_desc("a_${rcnt}_${sname}")
    assert parse_job(desc, dict(SUBMIT_VARS)).name == "a_7_local"


@pytest.mark.parametrize("variable", sorted(EXECUTION_VARIABLES))
def test_execution_variables_are_left_for_the_execution_stage(variable):
    assert submitted_args("${%s}" % variable) == ("${%s}" % variable,)


def test_submit_stage_undoubles_dollars_as_upstream():
    assert submitted_args("$$HOME", "$${rcnt}", "$$$$x", "$${it}") == (
        "$HOME", "${rcnt}", "$$x", "${it}")


@pytest.mark.parametrize("text", ["${HOME}", "$PATH", "${SLURM_JOB_ID}", "$1"])
def test_unknown_variables_are_left_for_shells(text):
    assert submitted_args(text) == (text,)


def test_submit_variables_in_every_string_of_the_description():
    desc = job_desc("a", execution={"exec": "/bin/${sname}", "env": {"R": "${rcnt}"},
                                    "wd": "w_${jname}", "stdout": "${uniq}.out",
                                    "script": None},
                    attributes={"when": "${date}"})
    spec = parse_job(desc, dict(SUBMIT_VARS))
    assert (spec.execution.exec, dict(spec.execution.env), spec.execution.wd,
            spec.execution.stdout, dict(spec.attributes)) == (
        "/bin/local", {"R": "7"}, "w_a", "0123abcd.out", {"when": "2024-01-02"})


def test_script_gets_submit_variables_and_keeps_shell_ones():
    desc = job_desc("a", execution={"script": "echo ${rcnt} $HOME $$$$x"})
    assert parse_job(desc, dict(SUBMIT_VARS)).execution.script == "echo 7 $HOME $$x"


def test_submit_stage_applies_to_dependency_names():
    desc = job_desc("b", after=["a_${rcnt}"])
    assert parse_job(desc, dict(SUBMIT_VARS)).after[0].job == "a_7"


def test_keys_are_not_substituted():
    desc = job_desc("a", execution={"exec": "x", "env": {"${rcnt}": "v"}})
    assert dict(parse_job(desc, dict(SUBMIT_VARS)).execution.env) == {"${rcnt}": "v"}


# =============================================================================== execution stage

def ctx(index=None, value=None, parts=(("n0", (0,)),), root_wd="/root/wd"):
    alloc = Allocation(tuple(NodeAllocation(node, tuple(cores)) for node, cores in parts))
    return TaskContext(name="j", index=index, value=value, allocation=alloc, root_wd=root_wd,
                       step_id="job1")


@pytest.mark.parametrize("context, expected", [
    (ctx(), {"it": "", "itval": "", "root_wd": "/root/wd", "ncores": "1", "nnodes": "1",
             "nlist": "n0"}),
    (ctx(index=3), {"it": "3", "itval": "3", "root_wd": "/root/wd", "ncores": "1",
                    "nnodes": "1", "nlist": "n0"}),
    (ctx(index=1, value="y"), {"it": "1", "itval": "y", "root_wd": "/root/wd", "ncores": "1",
                               "nnodes": "1", "nlist": "n0"}),
    (ctx(parts=(("n0", (0, 1)), ("n1", (0,)))), {"it": "", "itval": "", "root_wd": "/root/wd",
                                                "ncores": "3", "nnodes": "2",
                                                "nlist": "n0,n1"}),
])
def test_execution_variables(context, expected):
    assert execution_variables(context) == expected


def built(execution, context):
    desc = job_desc("a", execution=execution)
    spec = parse_job(desc, dict(SUBMIT_VARS))
    return build_task(spec.execution, context, {})


def test_execution_stage_substitutes_args():
    command = built({"exec": "/bin/echo", "args": ["${ncores}", "${nnodes}", "${nlist}",
                                                   "${it}", "${itval}", "${root_wd}"]},
                    ctx(index=1, value="y", parts=(("n0", (0, 1)), ("n1", (0,)))))
    assert command.argv == ["/bin/echo", "3", "2", "n0,n1", "1", "y", "/root/wd"]


def test_both_stages_unescape_dollars():
    command = built({"exec": "/bin/echo", "args": ["$$$$HOME", "$${it}", "${HOME}", "$$$${it}",
                                                   "$$"]}, ctx(index=2))
    assert command.argv == ["/bin/echo", "$HOME", "2", "${HOME}", "${it}", "$"]


def test_dollar_dollar_it_in_wd_and_stdout_is_the_index():
    """upstream test_fileinterface: ``wd: out_$${it}`` gives one directory per iteration."""
    command = built({"exec": "/bin/true", "wd": "out_$${it}", "stdout": "o_$${it}.txt"},
                    ctx(index=3))
    assert (command.wd, command.stdout) == ("/root/wd/out_3", "/root/wd/out_3/o_3.txt")


def test_a_resubmitted_description_is_not_substituted_again():
    spec = parse_job(job_desc("a", execution={"exec": "/bin/echo", "args": ["$$$$x"]}),
                     dict(SUBMIT_VARS))
    again = parse_job(dict(spec.description), None)
    assert (spec.execution.args, again.execution.args) == (("$$x",), ("$$x",))


def test_execution_stage_in_script_env_and_paths():
    command = built({"script": "echo ${it}", "env": {"IT": "${it}"}, "wd": "w${it}",
                     "stdout": "out.${it}"}, ctx(index=4))
    assert (command.argv[-1], command.env["IT"], command.wd, command.stdout) == (
        "echo 4", "4", "/root/wd/w4", "/root/wd/w4/out.4")


def test_substitute_matches_a_plain_regex_substitution_on_many_strings():
    """The parsed-template cache gives what one regex pass over the text gives."""
    import random
    import re

    pattern = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")

    def reference(text, values, unescape):
        def one(match):
            if match.group(1):
                return "$" if unescape else "$$"
            value = values.get(match.group(2) or match.group(3))
            return match.group(0) if value is None else value
        return pattern.sub(one, text)

    pieces = ["$", "$$", "${it}", "$it", "${ it }", "${HOME}", "$itval", "${root_wd}", "a",
              "/b/", "{", "}", "$1", "${", "x y", "é"]
    rng = random.Random(7)
    values = {"it": "3", "itval": "v$", "root_wd": "/w"}
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        for unescape in (True, False):
            assert substitute(text, values, unescape=unescape) == \
                reference(text, values, unescape), text
