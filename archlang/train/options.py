"""How to run a training (as opposed to what to train, the recipe), and the machine it runs on."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from archlang.errors import ArchlangError


@dataclass
class TrainOptions:
    """None of these enter the run's identity."""

    device: str = "cpu"
    bf16: bool = False  # bf16 autocast (about 2x on CPU for WRN-16-4); default is the papers' fp32
    tf32: bool = False  # TF32 matmuls/convolutions on CUDA (faster, ~10 bits of mantissa); off: true fp32
    channels_last: bool = False
    compile: bool = False
    threads: int | None = None
    # Denormal floats become 0 (CPU arithmetic only). Deep nets without BN whose gradients decay into
    # them step several times slower without it (99-layer plain ReLU, torch's default init: 3.6x the
    # CPU time). Changes the numbers: recorded in run.json, and a resume must use the same setting.
    flush_denormal: bool = False
    progress: bool = True
    download: bool | None = None  # None: download only when no data_dir is given
    cache_dir: Path | None = None
    checkpoint_every_s: float = 300.0  # mid-epoch checkpoints for long epochs
    max_steps: int | None = None  # stop (checkpointed) after this many optimizer steps of this call
    time_limit_s: float | None = None  # stop (checkpointed) after this long; resume later
    workers: int | None = None  # DataLoader processes for ImageNet (None: up to 8, one core left free)
    sync_every: int | None = None  # read loss/error back every N steps (None: 1 on CPU, 50 on CUDA)
    log_every: int = 50  # CSV/TensorBoard rows and (without a terminal) a progress line every N steps; 0: epochs only
    eval_subset: int | None = None  # evaluate on the first N test images (quick trials)
    log: Callable[[str], None] = field(default=lambda message: print(message, file=sys.stderr, flush=True))

    def check(self) -> None:
        """Refuse limits that cannot mean anything (they would otherwise still run a step)."""
        if self.max_steps is not None and self.max_steps < 1:
            raise ArchlangError(f"--max-steps must be at least 1, got {self.max_steps}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ArchlangError(f"--time-limit must be a positive number of minutes, got {self.time_limit_s / 60:g}")
        if self.threads is not None and self.threads < 1:
            raise ArchlangError(f"--threads must be at least 1, got {self.threads}")
        if self.log_every < 0:
            raise ArchlangError(f"--log-every must be at least 0, got {self.log_every}")
        if self.eval_subset is not None and self.eval_subset < 1:
            raise ArchlangError(f"--eval-subset must be at least 1, got {self.eval_subset}")
        if self.sync_every is not None and self.sync_every < 1:
            raise ArchlangError(f"sync_every must be at least 1, got {self.sync_every}")

    def recorded(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items() if k != "log"}


# glibc's defaults return freed conv buffers to the OS and map big ones afresh every step:
# slow and noisy on CPU (WRN-16-4 step 2.4-6.0 s -> steady 1.9 s with these settings).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_allocator() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1
        return libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok
    except (OSError, AttributeError):
        return False


# Elements of the probe per intra-op thread: above ATen's grain size (32,768), so every thread computes a part.
_PROBE_PER_THREAD = 65536


def denormals_kept() -> int:
    """How many elements of a multiply over every intra-op thread kept a denormal (0: all flushed).

    torch.set_flush_denormal sets the floating-point mode of the calling thread only; threads start
    with their creator's mode, so intra-op threads started before it (an earlier parallel op in
    this process) keep denormals (measured: half the elements with 2 threads).
    """
    # The smallest denormal made from its bits: writing 1e-39 would already be flushed on this thread.
    tiny = torch.ones(_PROBE_PER_THREAD * torch.get_num_threads(), dtype=torch.int32).view(torch.float32)
    return int(torch.count_nonzero(tiny * 1.0))


def configure_threads(opts: TrainOptions) -> None:
    """Flush-to-zero before the thread count: threads the pool starts later inherit the mode.

    The mode is set to the option's value every time, off included: it is a process setting, so an
    earlier training with --flush-denormal in this process would otherwise still flush a run that
    records it as off (and a resume in a fresh process would then compute differently)."""
    if not torch.set_flush_denormal(opts.flush_denormal) and opts.flush_denormal:
        raise ArchlangError("--flush-denormal: this CPU cannot flush denormal floats (no SSE3)",
                            hint="train without --flush-denormal")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    total = _PROBE_PER_THREAD * torch.get_num_threads()
    kept = denormals_kept()
    if opts.flush_denormal and kept:
        opts.log(f"warning: --flush-denormal covers the main thread but not all {torch.get_num_threads()} intra-op "
                 f"threads ({kept} of {total} probe elements kept a denormal): they were started before it; "
                 "with --threads 1 all the work is on the main thread")
    elif not opts.flush_denormal and kept < total:
        opts.log(f"warning: without --flush-denormal, {total - kept} of {total} probe elements were still flushed: "
                 "intra-op threads started by an earlier --flush-denormal training in this process keep it; "
                 "with --threads 1 all the work is on the main thread")


def configure_backends(device: torch.device, opts: TrainOptions) -> None:
    """cuDNN autotuning for the fixed-shape batches; TF32 only when asked (torch's default runs
    convolutions in TF32, which the papers' fp32 did not)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = opts.tf32
    torch.backends.cudnn.allow_tf32 = opts.tf32
    torch.set_float32_matmul_precision("high" if opts.tf32 else "highest")


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: torch.device) -> dict[str, Any]:
    """What run.json records about the machine and the software, for whoever compares two runs."""
    from archlang import __version__

    cuda = device.type == "cuda"
    return {
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
        "matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_tf32": torch.backends.cuda.matmul.allow_tf32, "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark, "python": platform.python_version(),
        "archlang": __version__, "git_commit": _git_commit(), "argv": list(sys.argv),
    }
