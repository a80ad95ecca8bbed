"""Counts the SIGINTs it receives after printing `ready` (issue 9, item 14:
one Ctrl-C at the terminal must reach the program once under `rprof run`)."""
import signal
import time

n = [0]


def on_int(signum, frame):
    n[0] += 1


signal.signal(signal.SIGINT, on_int)
print("ready", flush=True)
end = time.time() + 30
while time.time() < end and n[0] == 0:
    time.sleep(0.01)
time.sleep(1.0)  # a second copy, if any, arrives meanwhile
print("sigints", n[0], flush=True)
