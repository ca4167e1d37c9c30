"""``OomWatch`` (runtime/launch/oom.py) on a vmstat file of our own and an injected clock."""

from qcgflow.runtime.launch.oom import MAX_AGE, OomWatch


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def vmstat(path, kills):
    path.write_text("nr_free_pages 1000\noom_kill %d\nnr_dirty 3\n" % kills)


def test_a_kill_after_the_mark_is_seen(tmp_path):
    path = tmp_path / "vmstat"
    vmstat(path, 4)
    watch = OomWatch(str(path), Clock())
    mark = watch.mark()
    vmstat(path, 5)
    assert (mark, watch.killed_since(mark)) == (4, True)


def test_no_kill_since_the_mark(tmp_path):
    path = tmp_path / "vmstat"
    vmstat(path, 4)
    watch = OomWatch(str(path), Clock())
    assert watch.killed_since(watch.mark()) is False


def test_the_mark_is_reread_once_older_than_max_age(tmp_path):
    path, clock = tmp_path / "vmstat", Clock()
    vmstat(path, 1)
    watch = OomWatch(str(path), clock)
    vmstat(path, 2)
    assert watch.mark() == 1  # fresh enough: no read on the start path
    clock.now += MAX_AGE + 0.01
    assert watch.mark() == 2


def test_without_the_counter_nothing_is_claimed(tmp_path):
    path = tmp_path / "vmstat"
    path.write_text("nr_free_pages 1000\n")
    watch = OomWatch(str(path), Clock())
    assert (watch.available, watch.mark(), watch.killed_since(None)) == (False, None, False)


def test_a_missing_file_claims_nothing(tmp_path):
    watch = OomWatch(str(tmp_path / "absent"), Clock())
    assert watch.killed_since(watch.mark()) is False
