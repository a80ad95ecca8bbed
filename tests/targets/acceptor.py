"""Blocks in accept() on a loopback socket (127.0.0.1, port 0). For every
connection: reads one line, answers `echo:<line reversed>\n`. A line `quit`
ends the program, which then checks it served the expected number of
connections.

Usage: acceptor.py EXPECTED_CONNECTIONS. Prints `ready PORT`, then
`served N LINE` after each connection."""
import socket
import sys

from _target import check, check_clean, install, say


def accept_one(server):
    conn, peer = server.accept()
    check(peer[0] == "127.0.0.1", "connection from %r" % (peer,))
    return conn


def read_line(conn):
    data = b""
    while not data.endswith(b"\n"):
        part = conn.recv(4096)
        check(part, "connection closed before a full line: %r" % data)
        data += part
    return data[:-1].decode()


def handle(conn):
    with conn:
        line = read_line(conn)
        conn.sendall(("echo:" + line[::-1] + "\n").encode())
    return line


def main():
    install()
    expected = int(sys.argv[1])
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    served = 0
    say("ready", server.getsockname()[1])
    while True:
        conn = accept_one(server)
        line = handle(conn)
        served += 1
        say("served", served, line)
        if line == "quit":
            break
    server.close()
    check(served == expected, "served %d connections, expected %d" % (served, expected))
    check_clean()
    say("ok")


main()
