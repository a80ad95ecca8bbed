"""A WSGI app for the gunicorn --subprocesses test: `hello_view` runs once
per request; the body is the worker's PID."""
import os


def hello_view(environ):
    return b"%d\n" % os.getpid()


def app(environ, start_response):
    body = hello_view(environ)
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
