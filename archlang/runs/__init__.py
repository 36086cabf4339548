"""Run folders: the one owner of their layout, their records and their checkpoints.

`RunFolder` creates, opens, locks, reads and writes a run (archlang.runs.folder); the records it
reads are validated Pydantic models (archlang.runs.records); `load_run` gives a trained network to
analyse. Importing this package does not import torch (checkpoint and state modules do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from archlang.runs.folder import RunFolder
from archlang.runs.identity import RunIdentity
from archlang.runs.names import member_name, parse_member_name
from archlang.runs.records import MetricsRow, Progress, RankRng, RunInfo, Summary, Totals, is_done

__all__ = ["LoadedRun", "MetricsRow", "Progress", "RankRng", "RunFolder", "RunIdentity", "RunInfo", "Summary",
           "Totals", "is_done", "load_run", "member_name", "parse_member_name"]

if TYPE_CHECKING:
    from archlang.runs.load import LoadedRun, load_run


def __getattr__(name: str) -> Any:
    if name in ("LoadedRun", "load_run"):  # these import torch: only when asked for
        from archlang.runs import load

        return getattr(load, name)
    raise AttributeError(name)
