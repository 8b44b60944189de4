"""The JSON Schema of flow files, exported from the Pydantic models.

`python -m ivr.schema docs/flow.schema.json` rewrites the committed copy;
a test fails when that copy is out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ivr.model import Flow

SCHEMA_ID = "urn:voxgate:ivr-flow"


def flow_json_schema() -> dict[str, Any]:
    schema = Flow.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }


def schema_text() -> str:
    return json.dumps(flow_json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ivr.schema OUTPUT.json", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(schema_text(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
