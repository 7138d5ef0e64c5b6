"""Validates the OpenAPI document, then every recorded answer against it.

Usage: check_openapi.py OPENAPI_JSON [ANSWERS_JSONL]

The document is validated with openapi-spec-validator (OpenAPI 3.1). Each
line of ANSWERS_JSONL is {"method", "path", "status", "body"}: the body must
match the schema the document gives for that operation and status (JSON
Schema 2020-12, as OpenAPI 3.1 uses it), with references resolved inside the
document. Prints one line per failure and exits 1 if there is any.
"""

import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        document = json.load(handle)
    validate(document)
    print("openapi document: valid OpenAPI", document["openapi"])
    if len(sys.argv) < 3:
        return 0
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry = Registry().with_resource("urn:openapi", resource)
    failures = 0
    checked = 0
    with open(sys.argv[2], encoding="utf-8") as handle:
        for line in handle:
            answer = json.loads(line)
            failures += check(document, registry, answer)
            checked += 1
    print(f"answers: {checked} checked, {failures} not matching the document")
    return 1 if failures or checked == 0 else 0


def check(document, registry, answer) -> int:
    where = f"{answer['method']} {answer['path']} -> {answer['status']}"
    operation = document["paths"].get(answer["path"], {}).get(answer["method"].lower())
    if operation is None and answer["status"] in (404, 405):
        # An unknown path or method: the documented 404/405 answer.
        operation = {"responses": document["components"]["responses"]}
    if operation is None:
        print(f"{where}: no such operation in the document")
        return 1
    response = operation["responses"].get(str(answer["status"]))
    if response is None:
        print(f"{where}: status not documented")
        return 1
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[1]
        response = document["components"]["responses"][name]
    schema = response["content"]["application/json"]["schema"]
    pointer = schema["$ref"] if "$ref" in schema else None
    target = {"$ref": "urn:openapi" + pointer} if pointer else schema
    validator = Draft202012Validator(target, registry=registry)
    errors = sorted(validator.iter_errors(answer["body"]), key=lambda e: list(e.path))
    for error in errors[:3]:
        print(f"{where}: {'/'.join(map(str, error.path))}: {error.message[:200]}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
