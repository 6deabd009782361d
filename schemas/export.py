"""Write the catalog's JSON Schema documents: ``python -m schemas.export`` (``--check`` to verify)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from schemas.catalog import CATALOG, schema_id

EVENTS_DIR = Path(__file__).parent / "events"


def document(name: str, version: int) -> dict[str, Any]:
    schema = msgspec.json.schema(CATALOG[(name, version)])
    schema["$id"] = f"urn:village-analytics:event:{schema_id(name, version)}"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = schema_id(name, version)
    return schema


def rendered() -> dict[Path, str]:
    return {
        EVENTS_DIR / f"{schema_id(n, v)}.json": json.dumps(document(n, v), indent=2, sort_keys=True)
        + "\n"
        for (n, v) in CATALOG
    }


def main() -> None:
    check = "--check" in sys.argv
    stale = []
    for path, text in rendered().items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        raise SystemExit(f"stale JSON Schema documents: {', '.join(stale)}")


if __name__ == "__main__":
    main()
