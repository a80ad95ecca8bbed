"""Validate a speedscope file against speedscope's published JSON schema.

usage: check_speedscope.py SCHEMA_JSON FILE...

Uses the `jsonschema` package with the schema's own draft (draft-07).
Prints one line per file, "ok FILE" or the validation errors, and exits 1
if any file is invalid.
"""
import json
import sys

import jsonschema

with open(sys.argv[1], encoding="utf-8") as f:
    schema = json.load(f)
validator_class = jsonschema.validators.validator_for(schema)
validator_class.check_schema(schema)
validator = validator_class(schema)

failed = False
for path in sys.argv[2:]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        failed = True
        for e in errors[:20]:
            message = e.message if len(e.message) <= 300 else e.message[:300] + "..."
            print(f"{path}: {list(e.absolute_path)}: {message}")
    else:
        print(f"ok {path}")
sys.exit(1 if failed else 0)
