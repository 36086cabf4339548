"""`archlang runs` output: a Markdown table (the default), CSV or JSON of the rows."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from archlang.compare.rows import Row

HEADERS = {"run": "run", "family": "family", "params": "params", "epochs_done": "epochs",
           "final_test_error": "final test err %", "best_test_error": "best test err %", "mean_k": "mean k",
           "status": "status", "seconds": "wall time"}


def records(rows: list[Row], varying: list[str]) -> list[dict[str, Any]]:
    return [r.flat(varying) for r in rows]


def as_json(rows: list[Row], varying: list[str]) -> str:
    return json.dumps(records(rows, varying), indent=2) + "\n"


def as_csv(rows: list[Row], varying: list[str]) -> str:
    out = io.StringIO()
    flat = records(rows, varying)
    writer = csv.DictWriter(out, fieldnames=list(flat[0]) if flat else ["run"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in flat)
    return out.getvalue()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"


def _cell(key: str, row: Row, value: Any) -> str:
    if value is None:
        return ""
    if key == "params":
        return f"{value:,}"
    if key == "epochs_done":
        return f"{value}/{row.epochs}" if row.epochs else str(value)
    if key in ("final_test_error", "best_test_error"):
        return f"{value:.2f}"
    if key == "mean_k":
        return f"{value:.3f}"
    if key == "seconds":
        return _duration(value)
    return str(value).replace("|", "\\|")


def as_markdown(rows: list[Row], varying: list[str]) -> str:
    """A GitHub Markdown table; the run column is left out of a sweep, whose values name each run."""
    named = bool(varying) and all(set(varying) <= set(r.values) for r in rows)
    keys = list(dict.fromkeys(k for k in ("run", *varying, *HEADERS) if k != "run" or not named))
    if all(r.mean_k is None for r in rows):
        keys.remove("mean_k")  # no gated network here: the column would be empty
    lines = ["| " + " | ".join(HEADERS.get(k, k) for k in keys) + " |",
             "|" + "|".join("---:" if k in ("params", "final_test_error", "best_test_error", "mean_k", "seconds")
                            else "---" for k in keys) + "|"]
    for r in rows:
        flat = r.flat(varying)
        lines.append("| " + " | ".join(_cell(k, r, flat.get(k)) for k in keys) + " |")
    return "\n".join(lines) + "\n"
