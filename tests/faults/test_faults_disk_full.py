"""A full file system (issue 8, item 3): a real tmpfs of a few KiB mounted for the test.

* A task whose own writes fail (``No space left on device``) ends FAILED with its exit
  code; its stderr, kept elsewhere, says why.
* A task whose stdout/stderr file cannot even be created ends FAILED with the OSError
  naming the file (``[Errno 28] No space left on device: '.../out.txt'``).
* The service keeps running and later jobs succeed, also when its own working files
  (service.log, jobs.report) sit on the full file system.
"""


import pytest

from faults_harness import fill, small_tmpfs
from support.jobs import job, submit
from support.services import NetService, run_service


def one_line_each(text: str, needle: str) -> bool:
    """``needle`` is reported on exactly one line (not once per failed write)."""
    return len([line for line in text.splitlines() if needle in line]) == 1


@pytest.fixture
def full(tmp_path):
    with small_tmpfs(tmp_path / "full", "64k", inodes=64) as path:
        yield path


def test_task_whose_writes_fail_is_failed_with_the_reason(tmp_path, full):
    result = run_service(tmp_path, [
        submit(job("writer", script="head -c 1000000 /dev/zero > big.bin", wd=str(full),
                   stderr=str(tmp_path / "writer.err"))),
        submit(job("later", script="echo fine > later.out", after=[]))], timeout=60)
    entry = result.entry("writer")
    assert entry["state"] == "FAILED", result.describe()
    assert entry["messages"] == "exit code 1"
    assert "No space left on device" in (tmp_path / "writer.err").read_text()
    assert result.state("later") == "SUCCEED"
    assert result.returncode == 0
    assert "Traceback" not in result.service_log + result.stderr


@pytest.mark.parametrize("which", ["stdout", "stderr"])
def test_output_file_that_cannot_be_created_fails_naming_it(tmp_path, full, which):
    fill(full)
    result = run_service(tmp_path, [
        submit(job("echo", "echo", ["hi"], wd=str(full), **{which: "out.txt"})),
        submit(job("later", script="echo fine > later.out"))], timeout=60)
    entry = result.entry("echo")
    assert entry["state"] == "FAILED", result.describe()
    assert entry["messages"] == "[Errno 28] No space left on device: '%s'" % (full / "out.txt")
    assert result.state("later") == "SUCCEED"
    assert "Traceback" not in result.service_log + result.stderr


def test_service_whose_own_files_are_on_the_full_disk_keeps_serving(tmp_path):
    """The working directory (service.log, jobs.report) fills up under the service."""
    with small_tmpfs(tmp_path / "small", "256k") as small:
        # --no-journal: the resume journal (runtime/journal.py, in progress) still stops
        # the service's submit and finish when it cannot write; see the issue 8 notes
        service = NetService(tmp_path, "--no-journal", "--log", "debug", nodes="2",
                             wd=small / "wd")
        try:
            filler = {"name": "filler", "execution": {
                "script": "head -c 10000000 /dev/zero > fill.bin"}}
            assert service.request({"request": "submit", "jobs": [filler]})["code"] == 0
            assert service.wait_state("filler") == "FAILED"
            for number in range(40):  # report and log lines: more than the free pages
                name = "later%d" % number
                reply = service.request({"request": "submit", "jobs": [
                    {"name": name, "execution": {"exec": "true"}}]})
                assert reply["code"] == 0, reply
                assert service.wait_state(name) == "SUCCEED"
            assert service.info("filler")["messages"] == "exit code 1"
        finally:
            code = service.finish()
        assert code == 0
        errors = service.stderr()
        assert "Traceback" not in errors
        assert one_line_each(errors, "cannot write %s: No space left on device"
                             % (service.aux_dir / "service.log"))
        assert "final_status.json: No space left on device" in errors
