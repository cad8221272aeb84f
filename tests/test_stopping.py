"""Ctrl+C stops a long-running command within its grace period, whatever the code inside
does with the interrupt (``kmeans_dask.stopping``): real processes, real signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time

from kmeans_dask.stopping import EXIT_INTERRUPTED, exits_within

# each body says 'ready' inside its try: the test signals as soon as it reads the line, and
# an interrupt between the print and the try would escape the body (exit by SIGINT, -2)
BODIES = {
    # the interrupt is lost inside (as in Prefect's runner once): only the timer ends it
    "swallowed": """
        ready = False
        while True:
            try:
                if not ready:
                    ready = True
                    print("ready", flush=True)
                time.sleep(60)
            except KeyboardInterrupt:
                print("swallowed", flush=True)
    """,
    # the interrupt ends the block; the process goes on past the grace period unharmed
    "handled": """
        try:
            print("ready", flush=True)
            time.sleep(60)
        except KeyboardInterrupt:
            print("handled", flush=True)
    """,
}
AFTER = {"handled": "time.sleep(3)"}  # longer than the grace the test gives it


def _start(body: str, grace: float) -> subprocess.Popen:
    script = "\n".join(
        [
            "import sys, time",
            "from kmeans_dask.stopping import exits_within",
            f"with exits_within({grace}, 'probe'):",
            textwrap.indent(textwrap.dedent(BODIES[body]).strip(), "    "),
            AFTER.get(body, ""),
            "sys.exit(0)",
        ]
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_an_interrupt_lost_inside_still_exits_after_the_grace_period():
    proc = _start("swallowed", grace=2.0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - t0
    assert proc.returncode == EXIT_INTERRUPTED
    assert "swallowed" in out  # the block did see the KeyboardInterrupt
    assert "probe: stopping (up to 2 s; Ctrl+C again to exit at once)" in err
    assert "probe: not stopped 2 s after Ctrl+C; exiting now" in err
    assert 1.9 <= took < 20, took


def test_a_second_interrupt_exits_at_once():
    proc = _start("swallowed", grace=600.0)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_INTERRUPTED
    assert "probe: interrupted again; exiting now" in err
    assert time.monotonic() - t0 < 20


def test_a_block_that_stops_in_time_cancels_the_timer():
    proc = _start("handled", grace=1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "handled" in out
    assert "exiting now" not in err


def test_the_callback_asks_instead_of_the_exception():
    script = "\n".join(
        [
            "import sys, threading",
            "from kmeans_dask.stopping import exits_within",
            "asked = threading.Event()",
            "with exits_within(600, 'probe', on_interrupt=asked.set):",
            "    print('ready', flush=True)",
            "    while not asked.wait(0.05):",
            "        pass",
            "print('asked', flush=True)",
        ]
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "asked" in out
    assert "Traceback" not in err and "exiting now" not in err


def test_outside_the_main_thread_nothing_changes():
    before = signal.getsignal(signal.SIGINT)
    seen = []

    def body() -> None:
        with exits_within(0.1):
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [before]
    assert signal.getsignal(signal.SIGINT) is before


def test_the_previous_handler_comes_back_after_the_block():
    before = signal.getsignal(signal.SIGINT)
    with exits_within(0.1):
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


def test_no_interrupt_no_timer():
    threads = threading.active_count()
    with exits_within(5.0):
        pass
    assert threading.active_count() == threads
