"""Blocks in read() on stdin (a pipe) until TOTAL bytes have arrived, then
checks that they are exactly the expected payload (byte i is (7*i+3) % 251).

Usage: reader.py TOTAL. Prints `got N` (bytes so far) after every read."""
import os
import sys

from _target import check, check_clean, fail, install, say

CHUNK = 1 << 16


def payload(n):
    return bytes((7 * i + 3) % 251 for i in range(n))


def read_some():
    return os.read(0, CHUNK)


def consume(buf, chunk):
    buf.extend(chunk)
    return len(buf)


def main():
    install()
    total = int(sys.argv[1])
    buf = bytearray()
    reads = 0
    say("ready")
    while len(buf) < total:
        chunk = read_some()
        check(chunk, "end of input after %d of %d bytes" % (len(buf), total))
        reads += 1
        say("got", consume(buf, chunk))
    want = payload(total)
    check(len(buf) == total, "read %d bytes, expected %d" % (len(buf), total))
    if bytes(buf) != want:
        at = next(i for i in range(total) if buf[i] != want[i])
        fail("data differs at byte %d: %d != %d" % (at, buf[at], want[at]))
    check_clean()
    say("ok", total, "bytes in", reads, "reads")


main()
