"""Knows its own times: sleeps known amounts and spins for known CPU time,
measuring every call itself with perf_counter, and writes the truth as JSON
to argv[1]: for `sleeper` and `spinner` the summed wall time of their calls
(what cumtime must be), and for `time.sleep` the summed wall time of its
calls (what its tottime must be). Used by differential.rs's timing-truth
test, launched and attached (through attach_runner.py)."""
import json
import sys
import time

SLEEPS = [0.02, 0.04, 0.06, 0.08]
SPINS = [0.03, 0.05, 0.07]
truth = {"sleeper": 0.0, "spinner": 0.0, "time.sleep": 0.0, "spinner_cpu": 0.0}


def sleeper(s):
    t = time.perf_counter()
    time.sleep(s)
    truth["time.sleep"] += time.perf_counter() - t


def spinner(cpu):
    # Pure Python arithmetic between clock reads, so that almost all of the
    # time is the function's own.
    start = time.process_time()
    x = 0
    while time.process_time() - start < cpu:
        for i in range(2000):
            x += i * i
    truth["spinner_cpu"] += time.process_time() - start
    return x


def main():
    for s in SLEEPS:
        t = time.perf_counter()
        sleeper(s)
        truth["sleeper"] += time.perf_counter() - t
    for c in SPINS:
        t = time.perf_counter()
        spinner(c)
        truth["spinner"] += time.perf_counter() - t
    with open(sys.argv[1], "w") as f:
        json.dump(truth, f)


main()
