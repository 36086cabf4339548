"""The typed contents of a run folder: run.json, metrics rows, summary.json, checkpoint progress.

Every file is validated when read, so a hand-edited or damaged run folder is one message naming
the file and the field, never a KeyError or a TypeError somewhere in training or an analysis.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class _Open(BaseModel):
    """A record later versions may add fields to: unknown fields are kept, known ones are checked."""

    model_config = ConfigDict(frozen=True, extra="allow")

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class RunInfo(_Open):
    """run.json: what identifies the run and how it was run (options and versions do not enter the hash)."""

    spec_hash: str = Field(min_length=64, max_length=64)
    recipe_hash: str = Field(min_length=64, max_length=64)
    run_hash: str = Field(min_length=64, max_length=64)
    recipe_name: str | None = None
    family: str | None = None
    dataset: str | None = None
    data_origin: str | None = None
    subset: PositiveInt | None = None
    data_dir: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    torch: str | None = None
    params: NonNegativeInt | None = None
    processes: PositiveInt = 1
    environment: dict[str, Any] = Field(default_factory=dict)


class MetricsRow(_Open):
    """One line of metrics.jsonl: one finished epoch."""

    epoch: PositiveInt
    train_loss: float
    train_error: float
    test_loss: float | None = None
    test_error: float | None = None
    test_error_top5: float | None = None
    lr: float
    seconds: float
    steps: NonNegativeInt | None = None
    gates_k: dict[str, float] = Field(default_factory=dict)
    dirac_a: dict[str, float] = Field(default_factory=dict)


Status = Literal["finished", "stopped", "interrupted", "diverged", "failed"]
# Nothing left to train: a diverged run is an outcome of its settings (training it again repeats it).
DONE: tuple[Status, ...] = ("finished", "diverged")


def is_done(status: str) -> bool:
    """True for a run status (RunFolder.status) that no rerun or --resume should train again."""
    return status in DONE


class Summary(_Open):
    """summary.json: how the run ended and its final numbers."""

    status: Status
    epochs_done: NonNegativeInt
    epochs: PositiveInt
    recipe: str | None = None
    family: str | None = None
    dataset: str | None = None
    train_images: NonNegativeInt | None = None
    params: NonNegativeInt | None = None
    final_test_error: float | None = None
    final_test_error_top5: float | None = None
    best_test_error: float | None = None
    final_train_loss: float | None = None
    final_train_error: float | None = None
    mean_k: float | None = None
    seconds: float = 0.0


class Totals(_Frozen):
    """Running sums of the current epoch (float64 / exact integers): restored for an exact resume."""

    loss_sum: float = 0.0
    wrong: NonNegativeInt = 0
    seen: NonNegativeInt = 0
    seconds: float = 0.0


class NumpyRng(_Frozen):
    kind: str
    keys: str  # base64 of 624 uint32
    pos: int
    has_gauss: int
    cached: float


class RankRng(_Frozen):
    """One process's random state, in the one format checkpoints and torchrun gathering share."""

    torch: str  # base64 of torch.get_rng_state()
    cuda: list[tuple[NonNegativeInt, str]] = Field(default_factory=list)  # (device index, base64 state)
    numpy: NumpyRng | None = None
    python: tuple[int, list[int], float | None] | None = None


class Progress(_Frozen):
    """Where a checkpoint stands: validated on load, covered by the checkpoint's digest."""

    epoch: NonNegativeInt
    step: NonNegativeInt
    totals: Totals
    history: list[MetricsRow]
    run_hash: str = Field(min_length=8, max_length=64)
    world_size: PositiveInt = 1
    rng: list[RankRng] = Field(min_length=1)
    # A grouped copy whose loss stopped being finite: why. It stays diverged when the group resumes.
    diverged: str | None = Field(default=None, max_length=400)

    def as_json(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"history"})
        data["history"] = [row.as_dict() for row in self.history]
        return data
