"""Reading a workflow file: bounded, with the line of every key (``Source``), and the one
error type of workflow files.

A YAML or JSON file becomes plain data plus a line map, so every later message can say
``wf.yaml:14: tasks.simulate.cores: ...``. Reads are bounded (``runtime.inputfile``: size,
devices, FIFOs) and YAML aliases are measured before anything is expanded
(``_check_expansion``), so an endless file or an alias bomb is one error line.
"""

import bisect
import json
import re
from typing import Any, Dict, Optional, Tuple

from qcgflow.errors import GraphError
from qcgflow.runtime.inputfile import WORKFLOW_LIMIT, InputFileError, read_text

Path = Tuple[Any, ...]


class WorkflowFileError(GraphError):
    """A workflow file is not valid: ``file``, ``line`` (1-based), ``path`` (``tasks.a.cores``)
    and ``problem``; its text is ``file:line: path: problem``."""

    def __init__(self, file: str, line: int, path: str, problem: str):
        self.file, self.line, self.path, self.problem = file, line, path, problem
        where = "%s:%d: " % (file, line) + ("%s: " % path if path else "")
        super().__init__(where + problem)


def dotted(path: Path) -> str:
    """``("tasks", "a", "after", 0)`` -> ``tasks.a.after[0]``."""
    text = ""
    for part in path:
        text += "[%d]" % part if isinstance(part, int) else ("." if text else "") + str(part)
    return text


class Source:
    """The file name and the line of every key and list item (paths as tuples)."""

    def __init__(self, file: str, lines: Dict[Path, int],
                 starts: Optional[Dict[Path, int]] = None):
        self.file = file
        self.lines = lines
        self.starts = starts or {}  # the line where a string value's text begins (YAML)

    def line(self, path: Path) -> int:
        path = tuple(path)
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def error(self, path: Path, problem: str) -> WorkflowFileError:
        return WorkflowFileError(self.file, self.line(path), dotted(path), problem)

    def text_error(self, path: Path, text: str, offset: int, problem: str
                   ) -> WorkflowFileError:
        """An error about ``text[offset]``, the string at ``path``: on its own line when
        the string spans lines (a ``|`` block)."""
        path = tuple(path)
        line = self.starts[path] + text.count("\n", 0, offset) if path in self.starts \
            else self.line(path)
        return WorkflowFileError(self.file, line, dotted(path), problem)


# --------------------------------------------------------------------------- loading

MAX_VALUES = 1_000_000  # values of a workflow file once YAML aliases are expanded


def _check_expansion(root, file: str) -> None:
    """Refuse a YAML document that would expand beyond ``MAX_VALUES`` values, or that
    contains itself, before anything is built from it.

    Composing a document keeps one node per anchor however often an alias repeats it, so
    it is small even for an alias bomb ("billion laughs"); building the data would copy
    every repetition. The expanded size of each node is counted once (memoised), so the
    check is linear in the composed document.
    """
    import yaml
    sizes: Dict[int, int] = {}
    open_nodes: set = set()

    def size(node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in open_nodes:
            raise WorkflowFileError(file, node.start_mark.line + 1, "",
                                    "a YAML alias refers to a node that contains it "
                                    "(a recursive structure): refused")
        total = 1
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            open_nodes.add(id(node))
            items = node.value if isinstance(node, yaml.SequenceNode) else \
                [part for pair in node.value for part in pair]
            for item in items:
                total += size(item)
                if total > MAX_VALUES:
                    raise WorkflowFileError(
                        file, node.start_mark.line + 1, "",
                        "the document expands to more than %d values (YAML aliases repeat "
                        "their anchor's content each time they are used): refused"
                        % MAX_VALUES)
            open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total
    size(root)


def _load_yaml(text: str, file: str) -> Tuple[Any, Source]:
    import yaml
    lines: Dict[Path, int] = {}
    starts: Dict[Path, int] = {}
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                raise WorkflowFileError(file, 1, "", "the file is empty")
            _check_expansion(root, file)

            def convert(node, path: Path):
                if isinstance(node, yaml.MappingNode):
                    loader.flatten_mapping(node)
                    out = {}
                    for key_node, value_node in node.value:
                        key = loader.construct_object(key_node, deep=True)
                        if not isinstance(key, str):
                            key = str(key)
                        lines[path + (key,)] = key_node.start_mark.line + 1
                        if key in out:
                            raise Source(file, lines).error(path + (key,), "duplicate key")
                        out[key] = convert(value_node, path + (key,))
                    return out
                if isinstance(node, yaml.SequenceNode):
                    items = []
                    for index, item in enumerate(node.value):
                        lines[path + (index,)] = item.start_mark.line + 1
                        items.append(convert(item, path + (index,)))
                    return items
                # a block scalar's text begins on the line after its | or >
                starts[path] = node.start_mark.line + (2 if node.style in ("|", ">") else 1)
                return loader.construct_object(node, deep=True)
            lines[()] = root.start_mark.line + 1
            return convert(root, ()), Source(file, lines, starts)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise WorkflowFileError(file, line, "", "YAML syntax error: %s" % problem) from None
    except yaml.YAMLError as exc:
        raise WorkflowFileError(file, 1, "", "YAML error: %s" % exc) from None


def _load_json(text: str, file: str) -> Tuple[Any, Source]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowFileError(file, exc.lineno, "", "JSON syntax error: %s" % exc.msg) \
            from None
    newlines = [i for i, c in enumerate(text) if c == "\n"]
    lines: Dict[Path, int] = {(): 1}
    decoder = json.JSONDecoder()
    space = re.compile(r"[ \t\n\r]*")

    def line_of(position: int) -> int:
        return bisect.bisect_left(newlines, position) + 1

    def skip(i: int) -> int:
        return space.match(text, i).end()

    def value(i: int, path: Path) -> int:  # the text is valid JSON: no checks needed
        i = skip(i)
        if text[i] == "{":
            i = skip(i + 1)
            seen = set()
            while text[i] != "}":
                key, end = json.decoder.scanstring(text, i + 1)
                lines[path + (key,)] = line_of(i)
                if key in seen:
                    raise Source(file, lines).error(path + (key,), "duplicate key")
                seen.add(key)
                i = value(skip(end) + 1, path + (key,))
                i = skip(i)
                i = skip(i + 1) if text[i] == "," else i
            return i + 1
        if text[i] == "[":
            i = skip(i + 1)
            index = 0
            while text[i] != "]":
                lines[path + (index,)] = line_of(i)
                i = skip(value(i, path + (index,)))
                i = skip(i + 1) if text[i] == "," else i
                index += 1
            return i + 1
        return decoder.raw_decode(text, i)[1]
    value(0, ())
    return data, Source(file, lines)


def load(path: str, file: Optional[str] = None) -> Tuple[Any, Source]:
    """The data of a workflow file and its line map (``file``: the name used in messages)."""
    file = file or path
    try:
        text = read_text(path, WORKFLOW_LIMIT)
    except InputFileError as exc:
        raise WorkflowFileError(file, 1, "", str(exc)) from None
    except OSError as exc:
        raise WorkflowFileError(file, 1, "", "cannot read the file: %s" % exc.strerror) \
            from None
    except UnicodeDecodeError as exc:
        raise WorkflowFileError(file, 1, "", "not UTF-8 text (invalid byte at offset %d)"
                                % exc.start) from None
    try:
        if path.endswith(".json"):
            return _load_json(text, file)
        return _load_yaml(text, file)
    except RecursionError:  # both parsers recurse once per level of nesting
        raise WorkflowFileError(file, 1, "", "nested too deeply to be read") from None
