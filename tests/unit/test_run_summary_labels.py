"""How the run summary names an iteration (qcgflow/cli/run_summary.py, issue 21 item 4): by its
sweep parameters when the workflow compiler recorded their names, else by index and value."""

import pytest

from qcgflow.cli.run_summary import _label


def job(values=None, names=None, sweep_values=None):
    desc = {"name": "md", "execution": {"exec": "x"}}
    desc["iteration"] = {"values": values} if values is not None else {"start": 0, "stop": 3}
    if names is not None:
        sweep = {"names": names}
        if sweep_values is not None:
            sweep["values"] = sweep_values
        desc["attributes"] = {"qcgflow": {"sweep": sweep}}
    return desc


@pytest.mark.parametrize("name, desc, label", [
    ("md:1", job(["1.0", "1.3"], ["T"]), "md[T=1.3]"),
    ("md:1", job(["1.0,1", "1.3,2"], ["T", "P"]), "md[T=1.3,P=2]"),
    ("md:1", job(["a,b", "c,d"], ["T"]), "md[T=c,d]"),               # one name: no split
    ("md:1", job(["1,2,3", "4,5,6"], ["T", "P"]), "md:1 [4,5,6]"),  # not told apart
    ("md:1", job(["a", "b"]), "md:1 [b]"),                           # unnamed sweep
    ("md:2", job(names=["x"], sweep_values=["1", "2", "3"]), "md[x=3]"),  # Python task
    ("md:2", job(), "md:2"),
    ("md", job(["a"], ["T"]), "md"),
    ("md:9", job(["a"], ["T"]), "md:9"),                             # out of range
])
def test_labels(name, desc, label):
    assert _label(name, desc) == label
