"""Unit tests of the Slurm and node-launcher options of qcgflow.runtime.config."""

import pytest

from qcgflow.runtime.config import parse_service_args
from qcgflow.runtime.errors import UnsupportedOption

BASE = ["--file-path", "requests.json"]


def parse(*argv):
    return parse_service_args(BASE + list(argv))


@pytest.mark.parametrize("field, expected", [
    ("resources", "auto"), ("envschema", "auto"), ("slurm_limit_nodes_begin", None),
    ("slurm_limit_nodes_end", None), ("slurm_resources_file", None),
    ("nl_start_method", "slurm"), ("nl_init_timeout", 600.0), ("nl_ready_threshold", 1.0),
])
def test_defaults(field, expected):
    assert getattr(parse(), field) == expected


@pytest.mark.parametrize("argv, field, expected", [
    (["--resources", "slurm"], "resources", "slurm"),
    (["--resources", "local"], "resources", "local"),
    (["--envschema", "slurm"], "envschema", "slurm"),
    (["--slurm-limit-nodes-range-begin", "1"], "slurm_limit_nodes_begin", 1),
    (["--slurm-limit-nodes-range-begin", "0"], "slurm_limit_nodes_begin", 0),
    (["--slurm-limit-nodes-range-end", "3"], "slurm_limit_nodes_end", 3),
    (["--slurm-resources-file", "res.txt"], "slurm_resources_file", "res.txt"),
    (["--nl-start-method", "ssh"], "nl_start_method", "ssh"),
    (["--nl-start-method", "slurm"], "nl_start_method", "slurm"),
    (["--nl-init-timeout", "5"], "nl_init_timeout", 5.0),
    (["--nl-init-timeout", "0.5"], "nl_init_timeout", 0.5),
    (["--nl-ready-treshold", "0.5"], "nl_ready_threshold", 0.5),     # upstream's spelling
    (["--nl-ready-threshold", "0"], "nl_ready_threshold", 0.0),
    (["--nl-ready-threshold", "1"], "nl_ready_threshold", 1.0),
])
def test_accepted_values(argv, field, expected):
    assert getattr(parse(*argv), field) == expected


@pytest.mark.parametrize("argv, message", [
    (["--resources", "cloud"], "--resources: unknown value 'cloud' (use auto, slurm or local)"),
    (["--envschema", "pbs"], "--envschema: unknown value 'pbs' (use auto or slurm)"),
    (["--nl-start-method", "rsh"], "--nl-start-method: unknown value 'rsh' (use slurm or ssh)"),
    (["--nl-init-timeout", "0"], "--nl-init-timeout: 0 is not a positive number of seconds"),
    (["--nl-init-timeout", "-3"], "--nl-init-timeout: -3 is not a positive number of seconds"),
    (["--nl-init-timeout", "nan"], "--nl-init-timeout: nan is not a positive number of seconds"),
    (["--nl-init-timeout", "inf"], "--nl-init-timeout: inf is not a positive number of seconds"),
    (["--nl-ready-treshold", "1.5"],
     "--nl-ready-treshold: 1.5 is not a fraction between 0.0 and 1.0"),
    (["--nl-ready-threshold", "-0.1"],
     "--nl-ready-treshold: -0.1 is not a fraction between 0.0 and 1.0"),
    (["--nl-ready-threshold", "nan"],
     "--nl-ready-treshold: nan is not a fraction between 0.0 and 1.0"),
    (["--slurm-limit-nodes-range-begin", "-1"],
     "--slurm-limit-nodes-range-begin: -1 is negative (nodes are numbered from 0)"),
    (["--slurm-limit-nodes-range-end", "0"],
     "--slurm-limit-nodes-range-end: 0 selects no nodes (the end is exclusive, nodes are "
     "numbered from 0)"),
    (["--slurm-limit-nodes-range-begin", "2", "--slurm-limit-nodes-range-end", "2"],
     "--slurm-limit-nodes-range-begin 2 is not below --slurm-limit-nodes-range-end 2 "
     "(the end is exclusive)"),
    (["--slurm-resources-file", " "], "--slurm-resources-file: the path is empty"),
    (["--resources", "slurm", "--nodes", "2"],
     "--nodes describes local resources and cannot be combined with --resources slurm"),
    (["--slurm-resources-file", "r", "--nodes", "2"],
     "--slurm-resources-file applies to Slurm resources and cannot be combined with --nodes"),
    (["--slurm-limit-nodes-range-end", "2", "--resources", "local"],
     "--slurm-limit-nodes-range-end applies to Slurm resources and cannot be combined with "
     "--resources local"),
])
def test_bad_values_are_one_line_errors(argv, message):
    with pytest.raises(UnsupportedOption) as info:
        parse(*argv)
    assert str(info.value) == message


@pytest.mark.parametrize("argv, needle", [
    (["--governor", "--resume", "x"], "--resume with --governor needs --slurm-partition-nodes"),
    (["--governor", "--parent", "tcp://127.0.0.1:5555"], "does not register"),
    (["--slurm-partition-nodes", "0"], "not a positive number"),
    (["--governor", "--nodes", "2"], "no resources of its own"),
])
def test_governor_option_conflicts_are_refused(argv, needle):
    with pytest.raises(UnsupportedOption, match=needle):
        parse(*argv)


def test_parent_alone_is_upstreams_flow():
    """the secrets are found at start (governor/directory.py), not required here"""
    config = parse("--parent", "tcp://127.0.0.1:5555")
    assert (config.parent, config.parent_secrets, config.net) == (
        "tcp://127.0.0.1:5555", None, True)


@pytest.mark.parametrize("argv", [
    ["--slurm-limit-nodes-range-begin", "x"], ["--nl-init-timeout", "soon"],
    ["--nl-ready-threshold", "half"],
])
def test_non_numbers_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse(*argv)
    assert (info.value.code, "invalid" in capsys.readouterr().err) == (2, True)
