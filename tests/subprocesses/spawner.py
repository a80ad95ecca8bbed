"""A CPython that starts another CPython with `subprocess` (fork + exec)
once the file argv[1] exists; both call `work()` in a loop until the file
argv[2] exists. Prints `ready`, then `spawned PID` once the child runs."""
import os
import subprocess
import sys
import time

GO, QUIT = sys.argv[1], sys.argv[2]


def work():
    return sum(range(10))


if len(sys.argv) > 3:  # the child
    while not os.path.exists(QUIT):
        work()
        time.sleep(0.005)
    sys.exit(0)

print("ready", flush=True)
while not os.path.exists(GO):
    work()
    time.sleep(0.005)
child = subprocess.Popen([sys.executable, __file__, GO, QUIT, "child"])
print("spawned", child.pid, flush=True)
while not os.path.exists(QUIT):
    work()
    time.sleep(0.005)
child.wait()
