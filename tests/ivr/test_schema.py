from __future__ import annotations

import json
from pathlib import Path

from ivr.model import Flow
from ivr.schema import flow_json_schema, schema_text

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_schema_is_current() -> None:
    committed = (DOCS / "flow.schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(), "run: python -m ivr.schema docs/flow.schema.json"


def test_schema_lists_every_step_type() -> None:
    schema = flow_json_schema()
    step_schema = schema["properties"]["steps"]["additionalProperties"]
    kinds = sorted(step_schema["discriminator"]["mapping"])
    assert kinds == sorted(
        [
            "say",
            "gather",
            "menu",
            "set",
            "branch",
            "http",
            "queue",
            "transfer",
            "record",
            "subflow",
            "return",
            "hangup",
        ]
    )


def test_schema_uses_yaml_key_names() -> None:
    text = json.dumps(flow_json_schema())
    condition = flow_json_schema()["$defs"]["Condition"]["properties"]
    assert {"in", "all", "any", "not"} <= set(condition)
    assert "in_" not in condition
    assert '"json"' in text
    assert Flow.model_json_schema()["title"] == "Flow"
