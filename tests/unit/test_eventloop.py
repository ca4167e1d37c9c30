"""The event loop: plain descriptors (epoll) and ZeroMQ sockets (zmq.Poller) together."""

import os
import time

import zmq

from qcgflow.runtime.eventloop import EventLoop


def _pipe():
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    return r, w


def test_descriptor_callbacks_run_while_readable_and_stop_after_removal():
    loop = EventLoop()
    r, w = _pipe()
    seen = []

    def readable():
        seen.append(os.read(r, 100))
        if len(seen) == 2:
            loop.remove_reader(r)
            loop.stop()
        else:
            os.write(w, b"second")

    loop.add_reader(r, readable)
    os.write(w, b"first")
    loop.call_later(5.0, loop.stop)  # a hang fails the test instead of blocking it
    loop.run()
    assert seen == [b"first", b"second"]
    os.write(w, b"ignored")  # removed: no callback, the loop only runs its timers
    loop.call_later(0.02, loop.stop)
    loop.run()
    assert seen == [b"first", b"second"]
    os.close(r)
    os.close(w)
    loop.close()


def test_a_descriptor_added_again_gets_the_new_callback_and_is_still_watched():
    loop = EventLoop()
    r, w = _pipe()
    calls = []
    loop.add_reader(r, lambda: calls.append("old"))
    loop.add_reader(r, lambda: (calls.append("new"), os.read(r, 10), loop.stop()))
    os.write(w, b"x")
    loop.call_later(5.0, loop.stop)
    loop.run()
    assert calls == ["new"]
    loop.remove_reader(r)
    os.close(r)
    # a descriptor number closed without remove_reader and reused is watched again
    r2, w2 = _pipe()
    loop.add_reader(r2, lambda: (calls.append("reused"), os.read(r2, 10), loop.stop()))
    os.write(w2, b"y")
    loop.call_later(5.0, loop.stop)
    loop.run()
    assert calls == ["new", "reused"]
    for fd in (w, r2, w2):
        os.close(fd)


def test_removing_a_closed_descriptor_is_harmless():
    loop = EventLoop()
    r, w = _pipe()
    loop.add_reader(r, lambda: None)
    os.close(r)
    loop.remove_reader(r)  # epoll forgot it when it was closed
    loop.remove_reader(r)  # twice: a no-op
    os.close(w)
    loop.call_soon(loop.stop)
    loop.run()


def test_zmq_sockets_and_descriptors_are_served_in_the_same_turns():
    loop = EventLoop()
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push = ctx.socket(zmq.PUSH)
    push.connect("tcp://127.0.0.1:%d" % port)
    r, w = _pipe()
    got = []

    from_socket = []

    def on_socket():
        from_socket.append(pull.recv(zmq.NOBLOCK))
        got.append(from_socket[-1])
        if len(from_socket) == 2:
            loop.stop()

    def on_fd():
        got.append(os.read(r, 10))
        loop.remove_reader(r)
        push.send(b"from zmq")

    loop.add_reader(pull, on_socket)
    loop.add_reader(r, on_fd)
    push.send(b"first")
    os.write(w, b"from fd")
    loop.call_later(5.0, loop.stop)
    started = time.monotonic()
    loop.run()
    assert time.monotonic() - started < 5.0
    assert sorted(got) == [b"first", b"from fd", b"from zmq"]
    assert from_socket == [b"first", b"from zmq"]
    # the last socket removed: the loop waits in epoll alone and still serves descriptors
    loop.remove_reader(pull)
    r2, w2 = _pipe()
    loop.add_reader(r2, lambda: (got.append(os.read(r2, 10)), loop.stop()))
    os.write(w2, b"alone")
    loop.call_later(5.0, loop.stop)
    loop.run()
    assert got[-1] == b"alone"
    for fd in (r, w, r2, w2):
        os.close(fd)
    push.close(linger=0)
    pull.close(linger=0)
    ctx.term()


def test_a_timer_wakes_a_loop_blocked_on_descriptors():
    loop = EventLoop()
    r, w = _pipe()
    loop.add_reader(r, lambda: None)
    fired = []
    loop.call_later(0.05, lambda: (fired.append(time.monotonic()), loop.stop()))
    started = time.monotonic()
    loop.call_later(5.0, loop.stop)
    loop.run()
    assert fired and 0.04 <= fired[0] - started < 2.0
    loop.remove_reader(r)
    os.close(r)
    os.close(w)
