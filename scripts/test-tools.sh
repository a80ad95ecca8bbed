#!/usr/bin/env bash
# Installs the consumers' tools the format tests read rprof's files with,
# under target/test-tools (kept between runs): a venv with `protobuf` and
# `jsonschema` from PyPI, and speedscope's JSON schema from the `speedscope`
# npm package; and gunicorn (23.0.0, the last release for Python 3.7-3.9,
# pure Python) with its one dependency in target/test-tools/gunicorn, put
# on PYTHONPATH by the --subprocesses tests for every interpreter. Prints
# the directory; tests find it through RPROF_TEST_TOOLS.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$PWD/target/test-tools
mkdir -p "$dir"
if ! "$dir/venv/bin/python" -c 'import google.protobuf, jsonschema' 2>/dev/null; then
    python3 -m venv "$dir/venv" >&2
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check protobuf jsonschema >&2
fi
if [ ! -f "$dir/gunicorn/gunicorn/__init__.py" ]; then
    rm -rf "$dir/gunicorn"
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --target "$dir/gunicorn" gunicorn==23.0.0 packaging==24.2 >&2
fi
if [ ! -s "$dir/speedscope-schema.json" ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent speedscope >/dev/null && tar xzf speedscope-*.tgz package/dist/release/file-format-schema.json)
    mv "$tmp/package/dist/release/file-format-schema.json" "$dir/speedscope-schema.json"
    rm -rf "$tmp"
fi
echo "$dir"
