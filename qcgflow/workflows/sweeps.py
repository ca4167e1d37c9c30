"""Parameter sweeps of workflow files (``foreach``) and how their parameters reach a command.

::

    foreach: [a, b]  |  {range: [start, stop, step]}     one unnamed parameter: ${itval}
    foreach: {x: [...], seed: {range: [0, 4]}}          named parameters, their product

One named parameter becomes ``${itval}`` itself (exec args included). With several, each
iteration's ``${itval}`` is the values joined by ``,`` and ``${x}`` becomes a bash array
lookup indexed by ``${it}`` (a prelude of the script holds each parameter's distinct values,
not one entry per iteration); an exec task using them is run as ``exec PROG ARGS`` in bash.
"""

import itertools
import math
import re
import shlex
from typing import Any, List, Optional

import qcgflow.runtime.placeholders as _grammar  # THE ${...} grammar, the runtime's names

RUNTIME_VARIABLES = _grammar.EXECUTION_VARIABLES
# A sweep is expanded when the file is read (each iteration's ${itval} text): past a
# million iterations per task that costs seconds and hundreds of MB, so it is refused.
MAX_SWEEP = 1_000_000
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PARAM = _grammar.PATTERN  # groups 2 and 3: ${name}, $name (1: $$ and 4: ${ name }: not)


class Sweep:
    """The iterations of a task: ``names`` (None for an unnamed list or range), the values
    of each parameter (``columns``) and, per iteration, its ``${itval}`` text."""

    def __init__(self, names: Optional[List[str]], columns: List[List[Any]]):
        self.names = names
        self.columns = columns
        # the combinations are not kept (a tuple per iteration: ~56 MB at 1,000,000);
        # itertools.product makes them again when needed, in the same order
        self.itvals = [",".join(str(v) for v in combo)
                       for combo in itertools.product(*columns)]

    def __len__(self) -> int:
        return len(self.itvals)

    def elements(self) -> List[Any]:
        """What a Python task gets per iteration: the value, or a dict of the parameters."""
        if self.names is None or len(self.names) == 1:
            return list(itertools.chain(*self.columns[:1]))
        return [dict(zip(self.names, combo)) for combo in itertools.product(*self.columns)]

    def stride(self, index: int) -> int:
        return math.prod(len(column) for column in self.columns[index + 1:])


def scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _range(spec: Any, path: tuple, src) -> List[int]:
    if not isinstance(spec, list) or not 1 <= len(spec) <= 3 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in spec):
        raise src.error(path, "expected [stop], [start, stop] or [start, stop, step] "
                              "(integers)")
    if len(spec) == 3 and spec[2] == 0:
        raise src.error(path, "the step of a range cannot be 0")
    if len(range(*spec)) > MAX_SWEEP:
        raise src.error(path, "the range %s has %d values, over the limit of %d per task: "
                              "split the sweep over several tasks"
                        % (spec, len(range(*spec)), MAX_SWEEP))
    values = list(range(*spec))
    if not values:
        raise src.error(path, "the range %s is empty" % spec)
    return values


def _values(spec: Any, path: tuple, src) -> List[Any]:
    if isinstance(spec, dict) and set(spec) == {"range"}:
        return _range(spec["range"], path + ("range",), src)
    if isinstance(spec, list):
        if not spec:
            raise src.error(path, "an empty list of values: a sweep needs at least one")
        for index, item in enumerate(spec):
            if not scalar(item):
                raise src.error(path + (index,), "sweep values must be strings or numbers, "
                                                 "got %s" % type(item).__name__)
        return list(spec)
    raise src.error(path, "expected a list of values or {range: [start, stop, step]}")


def parse_sweep(spec: Any, path: tuple, src) -> Sweep:
    """``foreach``: a list, ``{range: [...]}``, or ``{param: list-or-range, ...}`` (product)."""
    if isinstance(spec, dict) and spec and set(spec) != {"range"}:
        for name in spec:
            if not IDENTIFIER.match(name) or name in RUNTIME_VARIABLES:
                raise src.error(path + (name,), "a parameter name must be an identifier and "
                                                "not one of %s" % ", ".join(RUNTIME_VARIABLES))
        columns = [_values(v, path + (k,), src) for k, v in spec.items()]
        size = math.prod(len(column) for column in columns)
        if size > MAX_SWEEP:
            raise src.error(path, "the product of the parameters has %d iterations, over the "
                                  "limit of %d per task: split the sweep over several tasks"
                            % (size, MAX_SWEEP))
        return Sweep(list(spec), columns)
    values = _values(spec, path, src)
    if len(values) > MAX_SWEEP:
        raise src.error(path, "%d values, over the limit of %d per task: split the sweep over "
                              "several tasks" % (len(values), MAX_SWEEP))
    return Sweep(None, [values])


# --------------------------------------------------------------------------- parameters

def _array(name: str) -> str:
    return "__qcgflow_%s" % name


def _expansion(sweep: Sweep, name: str) -> str:
    """The bash expression of parameter ``name`` in iteration ``${it}`` of a product."""
    index = sweep.names.index(name)
    return "${%s[$(( ${it} / %d %% %d ))]}" % (_array(name), sweep.stride(index),
                                                len(sweep.columns[index]))


def prelude(sweep: Sweep, used: set) -> str:
    lines = []
    for index, name in enumerate(sweep.names):
        if name in used:
            words = " ".join(shlex.quote(str(v)).replace("$", "$$$$")  # both stages
                             for v in sweep.columns[index])
            lines.append("%s=(%s)" % (_array(name), words))
    return "; ".join(lines) + "\n" if lines else ""


def fill(text: str, sweep: Optional[Sweep], shell: bool, used: set) -> str:
    """``text`` with the sweep's named parameters replaced: by ``${itval}`` for one
    parameter, by a bash array lookup for several (``shell``: inside a script)."""
    if sweep is None or sweep.names is None:
        return text

    def replace(match):
        name = match.group(2) or match.group(3)
        if name is None or name not in sweep.names:
            return match.group(0)
        used.add(name)
        if len(sweep.names) == 1:
            return "${itval}"
        expansion = _expansion(sweep, name)
        return expansion if shell else '"%s"' % expansion
    return _PARAM.sub(replace, text)


def word(text: str, sweep: Sweep, used: set) -> str:
    """One argument of an exec task as a bash word (literal parts quoted)."""
    parts, last = [], 0
    for match in _PARAM.finditer(text):
        if (match.group(2) or match.group(3)) in sweep.names:
            if match.start() > last:
                parts.append(shlex.quote(text[last:match.start()]))
            parts.append(fill(match.group(0), sweep, False, used))
            last = match.end()
    if last < len(text) or not parts:
        parts.append(shlex.quote(text[last:]))
    return "".join(parts)
