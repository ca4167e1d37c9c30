"""The bundler's decisions (qcgflow/session/bundles.py), pure: which calls share a job,
what waits for a bundle, what the service is told. Real sessions: tests/graph/test_graph_bundles.py."""

import base64
import pickle
from types import SimpleNamespace

import pytest

from qcgflow.build import groups, payload
from qcgflow.session import bundles
from qcgflow.session.bundles import Bundler, BundleItem
from qcgflow.session.events import Retry, Submit

STORE = {"QCGFLOW_STORE": "host:/run/.qcgflow/stores/s"}


def fast():
    return 1


def slow():
    return 2


def item(name, fn=fast, after=(), env=STORE, kind="python", **extra):
    task = SimpleNamespace(name=name, node=SimpleNamespace(kind=kind, mapped=None, fn=fn),
                           cancel_requested=False, error=None)
    job = {"name": name,
           "execution": {"exec": "/venv/python",
                         "args": ["-m", "qcgflow.runner", payload.INLINE + "abc" + name,
                                  "${root_wd}/.qcgflow/%s/result.pkl" % name],
                         "stdout": "${root_wd}/.qcgflow/%s.stdout" % name,
                         "stderr": "${root_wd}/.qcgflow/%s.stderr" % name},
           "attributes": {"qcgflow": {"when_written": ["stdout", "stderr"]}}}
    if env is not None:
        job["execution"]["env"] = dict(env)
    if after:
        job["dependencies"] = {"after": list(after)}
    for key, value in extra.items():
        job[key] = value
    return Submit(task, job)


def bundler(learned=(fast,)):
    names = iter("b%d" % i for i in range(1000))
    made = Bundler(lambda: next(names))
    for fn in learned:
        for _ in range(bundles.SAMPLES):
            made.learn(fn, 1e-5)
    return made


def cores(n):
    return lambda: n


def calls_of(entry):
    """(job name, reads) of a BundleItem's calls, from its runner argument."""
    argument = entry.job["execution"]["args"][2]
    assert argument.startswith(groups.BUNDLE)
    members = pickle.loads(base64.b64decode(argument[len(groups.BUNDLE):]))
    return [(name, tuple(reads)) for name, _, reads in members]


def test_calls_of_a_function_not_known_short_go_alone():
    made = bundler(learned=())
    items = [item("c%d" % i) for i in range(10)]
    assert made.route(items, cores(2)) == items
    made = bundler()
    made.learn(slow, 0.5)
    made.learn(slow, 0.5)
    items = [item("s%d" % i, fn=slow) for i in range(10)]
    assert made.route(items, cores(2)) == items


def test_independent_calls_spread_over_the_cores():
    made = bundler()
    sent = made.route([item("c%d" % i) for i in range(10)], cores(2))
    assert [type(entry) for entry in sent] == [BundleItem, BundleItem]
    assert [len(calls_of(entry)) for entry in sent] == [5, 5]
    job = sent[0].job
    assert job["name"] == "b0" and "dependencies" not in job
    assert job["execution"]["args"][3] == "${root_wd}/.qcgflow/b0/result.pkl"
    assert job["execution"]["stdout"] == "${root_wd}/.qcgflow/b0.stdout"
    assert job["execution"]["env"] == STORE
    assert made.sent_in["c7"] == "b1" and made.home["c7"].name == "b1"
    assert made.asked(["c1", "c2", "c7", "other"]) == ["b0", "b1", "other"]


def test_few_calls_go_alone_in_parallel():
    made = bundler()
    items = [item("c0"), item("c1")]
    assert made.route(items, cores(2)) == items


def test_a_chain_is_one_bundle_whose_calls_read_the_one_before():
    made = bundler()
    items = [item("c0")] + [item("c%d" % i, after=["c%d" % (i - 1)]) for i in range(1, 6)]
    (entry,) = made.route(items, cores(2))
    assert calls_of(entry) == [("c0", ())] + [("c%d" % i, (i - 1,)) for i in range(1, 6)]
    assert "dependencies" not in entry.job


def test_environment_and_outside_dependencies_split_bundles():
    made = bundler()
    other_env = dict(STORE, OMP_NUM_THREADS="1")
    items = ([item("a%d" % i) for i in range(4)] + [item("e%d" % i, env=other_env)
                                                   for i in range(4)]
             + [item("x%d" % i, after=["single"]) for i in range(4)])
    sent = made.route(items, cores(2))
    groups = [sorted(name for name, _ in calls_of(entry)) for entry in sent]
    assert all(len({name[0] for name in group}) == 1 for group in groups)
    after = [entry.job.get("dependencies") for entry in sent if calls_of(entry)[0][0][0] == "x"]
    assert after and all(deps == {"after": ["single"]} for deps in after)


def test_what_needs_a_call_in_flight_waits_and_then_goes_without_that_dependency():
    made = bundler()
    sent = made.route([item("c%d" % i) for i in range(6)], cores(2))
    waiter = item("cmd", kind="command", after=["c1", "other"], env=None)
    later = item("later", fn=slow, after=["cmd"])  # needs a parked one: parked too
    assert made.route([waiter, later], cores(2)) == []
    assert made.parked_names == {"cmd", "later"}
    first = sent[0].bundle
    assert made.ended(first.name) is first
    assert made.released() == [waiter, later] and not made.parked_names
    assert made.route([waiter, later], cores(2), bundle=False) == [waiter, later]
    assert waiter.job["dependencies"] == {"after": ["other"]}  # c1 ended: the service never knew it
    assert later.job["dependencies"] == {"after": ["cmd"]}


def test_a_bundle_of_one_goes_as_its_call_and_what_waits_for_it_goes_too():
    made = bundler()
    made.route([item("c%d" % i) for i in range(3)], cores(4))  # 3 < 4 cores: alone
    assert not made.home
    made = bundler()
    lone = item("lone", after=["x"])  # no other call runs after x: a bundle of one
    dependant = item("dep", fn=slow, after=["lone"])
    sent = made.route([item("c%d" % i) for i in range(4)] + [lone, dependant], cores(2))
    assert [entry.job["name"] for entry in sent][-2:] == ["lone", "dep"]
    assert lone.job["dependencies"] == {"after": ["x"]}
    assert dependant.job["dependencies"] == {"after": ["lone"]}
    assert not made.parked and "lone" not in made.hidden and "lone" not in made.home


@pytest.mark.parametrize("change", [
    {"resources": {"numCores": {"exact": 2}}},
    {"attributes": {"qcgflow": {"when_written": ["stdout"], "retries": 2}}},
    {"dependencies": {"afterAny": ["x"]}},
    {"dependencies": {"after": ["mapped:${it}"]}},
])
def test_calls_with_options_of_their_own_go_alone(change):
    made = bundler()
    odd = item("odd", **change)
    sent = made.route([item("c%d" % i) for i in range(4)] + [odd], cores(2))
    assert odd in sent and "odd" not in made.hidden


def test_retries_commands_and_calls_without_a_store_go_alone():
    made = bundler()
    retry = Retry(item("r").task, item("r").job, None, 1)
    command = item("cmd", kind="command")
    no_store = item("plain", env=None)
    for odd in (retry, command, no_store):
        assert made.eligible(odd) is None


def test_refs_that_travel():
    made = bundler()
    sent = made.route([item("c%d" % i) for i in range(4)], cores(2))
    assert made.travelling("c1") == (False, sent[0].job["name"])  # watched via its bundle
    assert made.travelling("unsent") == (False, None)
    assert "unsent" in made.alone and made.eligible(item("unsent")) is None
    made.ended(sent[0].job["name"])
    assert made.travelling("c1") == (True, None)  # ended: its result is read
    made.watch("their-bundle", "theirs")
    assert made.watched == {"their-bundle": ["theirs"]}


def test_a_call_sent_again_is_known_to_the_service_by_its_name():
    made = bundler()
    sent = made.route([item("c%d" % i) for i in range(4)], cores(2))
    bundle = made.ended(sent[0].job["name"])
    made.again(bundle.items[1])
    assert "c1" not in made.hidden and "c1" in made.alone
    assert made.asked(["c1", "c0"]) == ["c1"]  # c0 ended with its bundle: nothing to ask


def test_learning_is_a_running_mean_and_ignores_unhashable_callables():
    made = Bundler(lambda: "b")
    made.learn(fast, 0.001)
    assert made.short(fast) is None  # one sample is not enough
    made.learn(fast, 0.003)
    samples, mean = made.durations[fast]
    assert samples == 2 and mean == pytest.approx(0.001 + bundles.SMOOTHING * 0.002)
    assert made.short(fast) == pytest.approx(mean)
    for _ in range(20):
        made.learn(fast, 0.01)
    assert made.short(fast) is None  # no longer short
    made.learn([], 0.001)
    assert made.short([]) is None


def test_a_bundle_holds_no_more_expected_work_than_its_limit():
    made = bundler(learned=())
    for _ in range(bundles.SAMPLES):
        made.learn(fast, 0.001)
    sent = made.route([item("c%d" % i) for i in range(600)], cores(2))
    most = int(bundles.WORK / 0.001)
    assert [len(calls_of(entry)) for entry in sent] == [most] * (600 // most)
    made = bundler()
    sent = made.route([item("c%d" % i) for i in range(600)], cores(2))
    assert [len(calls_of(entry)) for entry in sent][:2] == [bundles.MOST] * 2
