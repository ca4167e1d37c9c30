"""THE ``${...}`` grammar (qcgflow/runtime/placeholders.py), table by table, and its four
users agreeing on it: command templates (graph/commands.py), the fill helper
(qcgflow/fill.py), workflow files (workflows/placeholders.py) and the runtime's variables
(runtime/variables.py). The reference is upstream's own: QCG-PilotJob fills job
descriptions with ``string.Template(...).safe_substitute``."""

import random
import string

import pytest

import qcgflow
from qcgflow import fill as fill_helper
from qcgflow.errors import TaskOptionError
from qcgflow.graph import commands
from qcgflow.runtime import placeholders as grammar
from qcgflow.runtime import variables
from qcgflow.workflows import placeholders as workflow_placeholders

E, B, N, S = grammar.ESCAPE, grammar.BRACED, grammar.BARE, grammar.SPACED

# text -> its $ forms, in order: (kind, name)
TOKENS = [
    ("plain", []),
    ("$$", [(E, None)]),
    ("${x}", [(B, "x")]),
    ("$x", [(N, "x")]),
    ("${ x }", [(S, "x")]),
    ("${x }", [(S, "x")]),
    ("${  x}", [(S, "x")]),
    ("${\tx\n}", [(S, "x")]),
    ("$itval", [(N, "itval")]),           # the longest name
    ("$it.val", [(N, "it")]),
    ("${_a1}", [(B, "_a1")]),
    ("${A_b}", [(B, "A_b")]),
    ("$$$x", [(E, None), (N, "x")]),       # read once, left to right
    ("$${x}", [(E, None)]),                # the second $ is the escape's
    ("$$$$", [(E, None), (E, None)]),
    ("\\${x}", [(B, "x")]),                # no backslash escape in the runtime's grammar
    ("$1", []),
    ("${1x}", []),
    ("${}", []),
    ("${x", []),
    ("$", []),
    ("${x:-default}", []),
    ("${#a[@]}", []),
    ("${ x y }", []),
    ("${é}", []),
    ("a${x}b$y", [(B, "x"), (N, "y")]),
]


@pytest.mark.parametrize("text, expected", TOKENS)
def test_tokens(text, expected):
    assert [(t.kind, t.name) for t in grammar.tokens(text)] == expected


@pytest.mark.parametrize("text, expected", TOKENS)
def test_a_token_is_the_text_it_spans(text, expected):
    for token in grammar.tokens(text):
        assert text[token.start:token.end].startswith("$")


@pytest.mark.parametrize("text, expected", TOKENS)
def test_names_are_the_braced_and_bare_tokens(text, expected):
    assert grammar.names(text) == {name for kind, name in expected if kind in (B, N)}


@pytest.mark.parametrize("text, expected", [
    ("echo ${ x }", [(5, "${ x }", "x")]),
    ("a ${x} ${ y} $${ z }", [(7, "${ y}", "y")]),  # $$ then text: { z } is not $-led
    ("${x}", []),
])
def test_spaced_forms_are_found_with_their_offsets(text, expected):
    assert grammar.spaced(text) == expected


VALUES = {"x": "X", "it": "3", "itval": "v$x", "y": "${x}"}


@pytest.mark.parametrize("text, unescape, expected", [
    ("${x}", True, "X"),
    ("$x", True, "X"),
    ("${ x }", True, "${ x }"),            # upstream's Template: text
    ("${unknown} $HOME", True, "${unknown} $HOME"),
    ("$$", True, "$"),
    ("$$", False, "$$"),
    ("$${x}", True, "${x}"),
    ("$${x}", False, "$${x}"),
    ("$itval", True, "v$x"),               # values are not read again
    ("${y}", True, "${x}"),
    ("$1 ${} ${x", True, "$1 ${} ${x"),
])
def test_substitute(text, unescape, expected):
    assert grammar.substitute(text, VALUES, unescape=unescape) == expected


@pytest.mark.parametrize("value", ["plain", "$", "$$", "${it}", "$it", "a$b ${x} $$ $"])
def test_a_literal_survives_the_two_stages(value):
    once = grammar.substitute(grammar.literal(value), VALUES, unescape=True)
    assert grammar.substitute(once, VALUES, unescape=True) == value


@pytest.mark.parametrize("text, expected", [("${x}", True), ("$x", True), ("$$x", False),
                                            ("${ x }", False), ("$1", False)])
def test_has_placeholders(text, expected):
    assert grammar.has_placeholders(text) is expected


# --------------------------------------------------------------------------- the users agree

PIECES = ["$", "$$", "${it}", "$it", "${ it }", "${it }", "${HOME}", "$itval", "${root_wd}",
          "\\", "a", "/b/", "{", "}", " ", "$1", "${", "x", "é", "${x:-1}", "_"]


def texts(count=2000, seed=11):
    rng = random.Random(seed)
    fixed = [text for text, _ in TOKENS]
    return fixed + ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8)))
                    for _ in range(count)]


def test_one_stage_is_upstreams_string_template():
    values = {"it": "3", "itval": "v$", "root_wd": "/w", "x": "${it}"}
    for text in texts():
        expected = string.Template(text).safe_substitute(values)
        assert (grammar.substitute(text, values, unescape=True),
                variables.substitute(text, values, unescape=True)) == (expected, expected), text


def test_the_runtime_keeps_the_escape_as_the_grammar_does():
    values = {"it": "3", "itval": "v$"}
    for text in texts():
        assert variables.substitute(text, values, unescape=False) == \
            grammar.substitute(text, values, unescape=False), text


def test_templates_see_the_placeholders_the_runtime_fills():
    for text in texts():
        assert commands.placeholders(text) == grammar.names(text), text
        assert variables.has_variables(text) == bool(grammar.names(text)), text


def test_templates_fill_what_the_runtime_would_and_keep_the_escapes():
    values = {"it": "3", "x": "X"}
    for text in texts():
        assert commands.fill(text, values) == \
            grammar.substitute(text, values, unescape=False), text


def test_the_fill_helper_reads_a_template_as_the_runtimes_two_stages():
    values = {"it": "3", "itval": "v$", "root_wd": "/w"}
    for text in texts():
        submitted = variables.substitute(text, {}, unescape=True)
        assert fill_helper.substitute(text, values) == \
            variables.substitute(submitted, values, unescape=True), text


def _workflow_check(text, known):
    def fail(offset, problem):
        return ValueError(offset, problem)
    return workflow_placeholders.check(text, known, {}, "/wf", fail)


def test_workflow_files_check_the_braced_placeholders_of_the_grammar():
    """Known braced names pass as written; an unknown one is reported at its token."""
    for text in texts():
        if "\\" in text or grammar.spaced(text):
            continue
        braced = [t for t in grammar.tokens(text) if t.kind == B]
        assert _workflow_check(text, sorted(grammar.names(text))) == text, text
        if braced:
            with pytest.raises(ValueError) as error:
                _workflow_check(text, [])
            assert error.value.args[0] == braced[0].start, text


@pytest.mark.parametrize("text", ["echo ${ x }", "echo ${x }", "${ it}"])
def test_every_graph_side_user_refuses_a_spaced_form(text):
    offset, form, name = grammar.spaced(text)[0]
    message = grammar.spaced_message(form, name)
    assert message.startswith("%s is not a placeholder" % form)
    assert message.endswith("write ${%s}" % name)
    with pytest.raises(TaskOptionError) as error:
        qcgflow.shell(text)
    assert error.value.fix == message
    with pytest.raises(TaskOptionError) as error:
        qcgflow.mpi("./solver", args=["-n", text])
    assert (error.value.option, error.value.fix) == ("args", message)
    with pytest.raises(ValueError) as error:
        _workflow_check(text, ["x", "it"])
    assert error.value.args == (offset, message)


def test_a_template_keyword_names_a_placeholder_of_the_grammar():
    assert qcgflow.shell("echo $x ${y} $${z}").placeholders == {"x", "y"}


@pytest.mark.parametrize("text, expected", [
    ("${seed} $seed", "${itval} ${itval}"),
    ("$${seed} ${ seed } ${seeds}", "$${seed} ${ seed } ${seeds}"),  # not placeholders
    ("$$$seed", "$$${itval}"),
])
def test_sweep_parameters_are_the_grammars_placeholders(text, expected):
    from qcgflow.workflows.sweeps import Sweep, fill
    used = set()
    assert fill(text, Sweep(["seed"], [[1, 2]]), True, used) == expected
    assert used == ({"seed"} if "itval" in expected else set())


@pytest.mark.parametrize("text, expected", [
    ("out.${it}", "out.\"${it}\""),
    ("out.$${it}", "'out.$${it}'"),        # an escape: text for the runtime's stages
    ("a b${itval}", "'a b'\"${itval}\""),
])
def test_output_paths_keep_the_grammars_iteration_placeholders_for_the_runtime(text, expected):
    from qcgflow.build.outputs import quote
    assert quote(text) == expected
