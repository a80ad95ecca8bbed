"""A process tree for `rprof attach --subprocesses`: N forked Python
workers calling `work()` in a loop (so does the parent), and one
non-Python child (`sleep`),
which rprof must skip silently. Prints `ready` once every child runs;
ends them all and exits once the file argv[3] exists. Workers also
exit by themselves when the parent is gone."""
import os
import subprocess
import sys
import time

N = int(sys.argv[1])
PERIOD = float(sys.argv[2])
QUIT = sys.argv[3]
parent = os.getpid()


def work():
    return sum(range(10))


def worker():
    while os.getppid() == parent:
        work()
        time.sleep(PERIOD)
    os._exit(0)


kids = []
for _ in range(N):
    pid = os.fork()
    if pid == 0:
        worker()
    kids.append(pid)
sleeper = subprocess.Popen(["sleep", "600"])
print("ready", flush=True)
while not os.path.exists(QUIT):
    work()
    time.sleep(PERIOD)
sleeper.kill()
sleeper.wait()
for pid in kids:
    os.kill(pid, 15)
    os.waitpid(pid, 0)
