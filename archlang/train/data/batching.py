"""Batches of whole uint8 datasets, augmented a whole batch at a time.

Per-image PIL transforms cost as much as a small network on 2 CPU cores, so every
dataset is decoded once into a uint8 tensor [N, C, H, W] (kept on the training device)
and crops/flips are one gather per batch. All randomness of an epoch (order, crop
offsets, flips) is drawn up front from a generator seeded by (seed, epoch): a run
resumed at any step of any epoch sees exactly the batches of an uninterrupted run.
Under torchrun every process draws the same plan and takes its own contiguous shard of
each global batch, so the processes together see exactly one single-process batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from archlang.train.data.normalize import gcn
from archlang.train.data.types import Split


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect-padding index map (edge pixel not repeated), like F.pad(mode='reflect')."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def _affine(normalize: str, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) of x = u8 * a + b, per channel [1, C, 1, 1] or, for a mean image [C, H, W], per pixel.

    GCN and ZCA work in their own units (the 0-255 scale cancels out), so their a is 1.
    """
    if normalize in ("pixel_mean", "gcn"):
        unit = 1.0 / 255.0 if normalize == "pixel_mean" else 1.0
        return torch.full((1, 1, 1, 1), unit), -mean.reshape(1, *mean.shape[-3:])
    c = mean.numel()
    if normalize == "gcn_zca":
        return torch.ones(1, c, 1, 1), torch.zeros(1, c, 1, 1)
    shift = mean if normalize in ("mean", "meanstd") else torch.zeros(c)
    scale = std if normalize == "meanstd" else torch.ones(c)
    return (1.0 / (255.0 * scale)).view(1, c, 1, 1), (-shift / scale).view(1, c, 1, 1)


@dataclass
class EpochPlan:
    """All random draws of one epoch, so any step of it can be replayed exactly."""

    order: torch.Tensor  # [N] sample indices
    offsets: torch.Tensor  # [N, 2] crop offsets in [0, 2 * pad]
    flips: torch.Tensor  # [N] bool


class Batching:
    """What every batch iterator shares: global batches, their per-process shards, and the
    normalisation x = u8 * a + b, which folds /255, mean and std into one multiply-add."""

    def __init__(self, total: int, *, batch_size: int, mean: torch.Tensor, std: torch.Tensor, normalize: str,
                 device: torch.device, train: bool, seed: int = 0, channels_last: bool = False,
                 dtype: torch.dtype = torch.float32, rank: int = 0, world_size: int = 1, gcn_scale: float = 55.0,
                 whiten: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.total, self.batch_size, self.device, self.train, self.seed = total, batch_size, device, train, seed
        self.channels_last, self.dtype = channels_last, dtype
        self.rank, self.world_size = rank, world_size
        self.normalize, self.gcn_scale = normalize, gcn_scale
        self.whole_image = normalize in ("pixel_mean", "gcn", "gcn_zca")
        if (normalize == "gcn_zca") != (whiten is not None):
            raise ValueError("normalize gcn_zca, and it alone, takes the fitted whitening (select.whitening)")
        self.whiten = tuple(t.to(device, dtype) for t in whiten) if whiten is not None else None
        a, b = _affine(normalize, mean, std)
        self.a, self.b = a.to(device, dtype), b.to(device, dtype)

    def __len__(self) -> int:
        return (self.total + self.batch_size - 1) // self.batch_size

    def global_count(self, step: int) -> int:
        """Images in global batch `step`: batch_size, except a shorter last batch."""
        return min(self.batch_size, self.total - step * self.batch_size)

    def shard(self, step: int) -> slice:
        """This process's part of global batch `step`, as positions in the epoch's order.

        Contiguous and balanced like torch.tensor_split: in a short last batch the first
        processes take one image more, so rank 0 (whose BN buffers DDP broadcasts) never
        gets an empty shard. With one process it is the whole batch.
        """
        start, n = step * self.batch_size, self.global_count(step)
        size, extra = divmod(n, self.world_size)
        first = start + self.rank * size + min(self.rank, extra)
        return slice(first, first + size + (1 if self.rank < extra else 0))

    def epoch_generator(self, epoch: int) -> torch.Generator:
        """The source of every random draw of one training epoch: a function of (seed, epoch) only."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs, labels) of this process for each step of `epoch` from `start_step`."""
        raise NotImplementedError

    def normalized(self, images: torch.Tensor) -> torch.Tensor:
        """Float images of uint8 ones: x * a + b, after GCN and ZCA of each whole image where asked."""
        x = images.to(self.dtype)
        if self.normalize in ("gcn", "gcn_zca"):
            x = gcn(x, self.gcn_scale)
        if self.whiten is not None:
            mean, w = self.whiten
            x = ((x.flatten(1) - mean) @ w).view_as(x)
        return x * self.a + self.b

    def formatted(self, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if self.channels_last and x.dim() == 4 else torch.contiguous_format
        return x.contiguous(memory_format=fmt)


class BatchLoader(Batching):
    """Batches of normalised float tensors from a uint8 split on the training device."""

    def __init__(
        self,
        split: Split,
        *,
        batch_size: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        normalize: str,
        device: torch.device,
        train: bool,
        crop_pad: int = 0,
        pad_mode: str = "reflect",
        flip: bool = False,
        seed: int = 0,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        rank: int = 0,
        world_size: int = 1,
        gcn_scale: float = 55.0,
        whiten: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__(len(split), batch_size=batch_size, mean=mean, std=std, normalize=normalize, device=device,
                         train=train, seed=seed, channels_last=channels_last, dtype=dtype, rank=rank,
                         world_size=world_size, gcn_scale=gcn_scale, whiten=whiten)
        self.data = split.to(device)
        self.crop_pad = crop_pad if train else 0
        self.pad_mode = pad_mode
        self.flip = flip and train

    def plan(self, epoch: int) -> EpochPlan:
        n = len(self.data)
        if not self.train:
            return EpochPlan(torch.arange(n), torch.zeros(n, 2, dtype=torch.long), torch.zeros(n, dtype=torch.bool))
        g = self.epoch_generator(epoch)
        order = torch.randperm(n, generator=g)
        offsets = torch.randint(0, 2 * self.crop_pad + 1, (n, 2), generator=g)
        flips = torch.rand(n, generator=g) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        return EpochPlan(order, offsets, flips)

    def _gather(self, idx: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        images = self.data.images
        if self.whole_image:  # normalise the whole images first, then crop the float batch
            images, idx = self.normalized(images[idx]), torch.arange(len(idx), device=self.device)
        _, _, h, w = images.shape
        p = self.crop_pad
        rows = offsets[:, :1] - p + torch.arange(h, device=self.device)  # [B, H]
        cols = offsets[:, 1:] - p + torch.arange(w, device=self.device)  # [B, W]
        cols = torch.where(flips[:, None], cols.flip(1), cols)
        inside = None
        if self.pad_mode == "zeros":
            inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
            rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
        else:
            rows, cols = _reflect(rows, h), _reflect(cols, w)
        # One advanced-indexing gather: [B, H, W, C], which permutes to a channels_last NCHW view.
        batch = images[idx[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        x = batch if self.whole_image else self.normalized(batch)
        if inside is not None:
            x = x * inside[:, None].to(x.dtype)  # zero padding in normalised units
        return x

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = self.plan(epoch)
        order, offsets, flips = (t.to(self.device) for t in (plan.order, plan.offsets, plan.flips))
        for step in range(start_step, len(self)):
            sl = self.shard(step)
            idx = order[sl]
            if self.crop_pad or self.flip:
                x = self._gather(idx, offsets[sl], flips[sl])
            else:
                x = self.normalized(self.data.images[idx])
            yield self.formatted(x), self.data.labels[idx]


def _one_gather(loaders: list[Batching]) -> bool:
    """Whether G copies' batches differ only by their seeds' orders over one tensor of images, with no crops,
    flips or per-image normalisation: then one gather and one multiply-add give every copy's batch."""
    first = loaders[0]
    if not all(type(l) is BatchLoader for l in loaders):
        return False
    return all(not (l.crop_pad or l.flip or l.whole_image) and l.whiten is None and l.world_size == 1
               and l.data.images.data_ptr() == first.data.images.data_ptr()
               and l.data.images.shape == first.data.images.shape
               and l.data.labels.data_ptr() == first.data.labels.data_ptr() and l.batch_size == first.batch_size
               and l.dtype == first.dtype and torch.equal(l.a, first.a) and torch.equal(l.b, first.b)
               for l in loaders)


def grouped_batches(loaders: list[Batching], epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor,
                                                                                                torch.Tensor]]:
    """Each step's batches of G copies as [G, B, ...] inputs and [G, B] labels, copy i's exactly loader i's.

    The MNIST recipes' copies take one gather and one normalisation for all G instead of G of each and two
    stacks, which cost ~1.5 ms of a ~6 ms step of a d = 2 net at G = 5 on one thread (cProfile, session 9).
    """
    if not _one_gather(loaders):
        for batches in zip(*(l.batches(epoch, start_step) for l in loaders)):
            yield torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])
        return
    first: BatchLoader = loaders[0]  # type: ignore[assignment]
    orders = torch.stack([l.plan(epoch).order for l in loaders]).to(first.device)
    for step in range(start_step, len(first)):
        idx = orders[:, first.shard(step)]
        yield first.normalized(first.data.images[idx]).contiguous(), first.data.labels[idx]
