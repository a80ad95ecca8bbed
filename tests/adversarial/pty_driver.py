"""Runs ARGV in a new pseudo-terminal (as its controlling terminal, in the
foreground), types Ctrl-C once the program prints `ready`, and prints all
that it wrote, then `exit N`."""
import os
import pty
import select
import sys
import time

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
out = b""
sent = False
deadline = time.time() + 60
status = None
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.05)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            break
        out += data
        if not sent and b"ready" in out:
            os.write(fd, b"\x03")
            sent = True
done, st = os.waitpid(pid, 0) if time.time() < deadline else (0, 0)
sys.stdout.write(out.decode("utf-8", "replace"))
if not done:
    code = "timeout"
elif os.WIFEXITED(st):
    code = os.WEXITSTATUS(st)
else:
    code = -os.WTERMSIG(st)
print("\nexit", code)
