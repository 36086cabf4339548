"""Data: whole-dataset uint8 loading, ImageFolder zips, batched augmentation, clear errors."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archlang.errors import ArchlangError
from archlang.train.data import BatchLoader, Split, load_dataset, load_imagefolder
from archlang.train.data.batching import _one_gather, grouped_batches


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _write_zip(path: Path, per_class: int = 3, size: int = 8) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    written: dict[str, list[np.ndarray]] = {}
    with zipfile.ZipFile(path, "w") as z:
        for split in ("train", "test"):
            for label in ("cat", "ant"):  # not in sorted order: ImageFolder sorts classes
                for i in range(per_class):
                    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                    z.writestr(f"data/{split}/{label}/{i:04d}.png", _png(img))
                    written.setdefault(f"{split}/{label}", []).append(img)
    return written


def test_mnist_loads_whole_as_uint8(shared_mnist: Path) -> None:
    data = load_dataset("mnist", data_dir=shared_mnist)
    assert data.train.images.shape == (60000, 1, 28, 28) and data.train.images.dtype == torch.uint8
    assert data.test.images.shape == (10000, 1, 28, 28)
    assert abs(float(data.mean[0]) - 0.1307) < 1e-3 and abs(float(data.std[0]) - 0.3081) < 1e-3


def test_missing_dataset_names_path_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ArchlangError) as info:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    text = info.value.render()
    assert text.startswith(f"{tmp_path}: error: cifar10 dataset not found")
    assert "--data-dir" in text and "download" in text
    with pytest.raises(ArchlangError, match="does not exist"):
        load_dataset("mnist", data_dir=tmp_path / "nowhere")


def test_partial_mnist_folder_is_a_clear_error(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 10)  # truncated
    with pytest.raises(ArchlangError) as info:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert str(tmp_path) in info.value.render() and "mnist dataset not found" in info.value.render()


def test_imagefolder_zip_decodes_in_imagefolder_order_and_caches(tmp_path: Path) -> None:
    written = _write_zip(tmp_path / "tiny.zip")
    data = load_imagefolder(tmp_path / "tiny.zip", cache_dir=tmp_path / "cache")
    splits = {"train": data.train, "test": data.test}
    assert data.classes == ["ant", "cat"]
    assert splits["test"].labels.tolist() == [0, 0, 0, 1, 1, 1]  # test split: ImageFolder order
    assert torch.equal(splits["test"].images[3].permute(1, 2, 0), torch.from_numpy(written["test/cat"][0]))
    # train split: a fixed shuffle, so that --subset N is not N images of one class
    assert sorted(splits["train"].labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert splits["train"].labels.tolist() != [0, 0, 0, 1, 1, 1]
    for image, label in zip(splits["train"].images, splits["train"].labels):
        pool = written["train/ant" if label == 0 else "train/cat"]
        assert any(np.array_equal(image.permute(1, 2, 0).numpy(), p) for p in pool)
    assert len(list((tmp_path / "cache").iterdir())) == 1
    again = load_imagefolder(tmp_path / "tiny.zip", cache_dir=tmp_path / "cache")
    assert torch.equal(again.test.images, data.test.images) and torch.equal(again.train.images, data.train.images)


def test_corrupt_zip_and_corrupt_image_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ArchlangError, match="not a readable zip"):
        load_imagefolder(tmp_path / "broken.zip", cache_dir=tmp_path / "c")
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as z:
        z.writestr("train/a/0.png", b"garbage")
        z.writestr("test/a/0.png", b"garbage")
    with pytest.raises(ArchlangError) as info:
        load_imagefolder(tmp_path / "bad.zip", cache_dir=tmp_path / "c")
    assert "corrupted image" in info.value.render() and "train/a/0.png" in info.value.render()


def _loader(split: Split, **kw) -> BatchLoader:
    args = {"batch_size": 4, "mean": torch.zeros(3), "std": torch.ones(3), "normalize": "scale",
            "device": torch.device("cpu"), "train": True, "seed": 3}
    args.update(kw)
    return BatchLoader(split, **args)


def test_batched_crop_and_flip_match_reflect_pad_reference() -> None:
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8, generator=g), torch.arange(10))
    loader = _loader(split, crop_pad=2, flip=True)
    plan = loader.plan(epoch=5)
    padded = F.pad(split.images.float(), (2, 2, 2, 2), mode="reflect")
    got = torch.cat([x for x, _ in loader.batches(5)])
    for i, idx in enumerate(plan.order.tolist()):
        oy, ox = plan.offsets[i].tolist()
        want = padded[idx, :, oy:oy + 8, ox:ox + 8]
        if plan.flips[i]:
            want = want.flip(-1)
        assert torch.allclose(got[i], want / 255.0)
    assert plan.flips.any() and not plan.flips.all()
    assert not torch.equal(loader.plan(6).order, plan.order)


def test_resuming_mid_epoch_replays_the_same_batches() -> None:
    split = Split(torch.randint(0, 256, (11, 3, 8, 8), dtype=torch.uint8), torch.arange(11))
    loader = _loader(split, crop_pad=2, flip=True)
    full = list(loader.batches(2))
    tail = list(loader.batches(2, start_step=2))
    assert len(full) == 3 and len(tail) == 1
    assert torch.equal(full[2][0], tail[0][0]) and torch.equal(full[2][1], tail[0][1])


def test_normalisation_mean_std() -> None:
    split = Split(torch.full((2, 3, 4, 4), 255, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))
    mean, std = torch.tensor([0.5, 0.25, 0.0]), torch.tensor([0.5, 0.25, 1.0])
    loader = _loader(split, train=False, normalize="meanstd", mean=mean, std=std)
    x, _ = next(loader.batches(0))
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, 3.0, 1.0]))


@pytest.mark.parametrize("command,spec", [
    ("prune", "mlp(depth=4, width=16, block=gated(residual))"),
    ("lesion", "mlp(depth=3, width=16, block=highway, bn=false)"),
    ("gates", "mlp(depth=3, width=16, block=highway, bn=false)"),
])
def test_analyses_of_a_spec_with_weights_take_dataset(command: str, spec: str, tiny_mnist: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import archlang
    from archlang.cli import main
    from archlang.weights import save_weights

    weights = tmp_path / "w.safetensors"
    save_weights(archlang.compile_spec(spec).build(), weights)
    base = [command, spec, "--weights", str(weights), "--data-dir", str(tiny_mnist), "--out", str(tmp_path), "--json"]
    assert main(base[:4] + ["--data-dir", str(tiny_mnist)]) == 2  # no run folder, no --dataset: told to pass it
    assert "pass --dataset NAME" in capsys.readouterr().err
    assert main(base + ["--dataset", "mnist"]) == 0
    result = json.loads(capsys.readouterr().out)
    if command == "prune":
        assert result["removed"] == [0, 1, 2] and len(result["accuracy"]) == 3
    elif command == "lesion":
        assert 0.0 <= result["baseline_error"] <= 100.0 and len(result["lesions"]) == 3
    else:
        assert all("mean_T" in row for row in result["rows"] if row["kind"] == "highway")
    assert main(base + ["--dataset", "cifar10"]) == 2  # no CIFAR-10 in that folder
    assert "cifar10 dataset not found" in capsys.readouterr().err


@pytest.mark.parametrize("kw, one_gather", [({}, True), ({"normalize": "meanstd"}, True),
                                            ({"crop_pad": 2}, False), ({"flip": True}, False)])
def test_grouped_batches_are_each_copys_own_loaders_batches(kw: dict, one_gather: bool) -> None:
    # 11 images in batches of 4: a short last batch; seeds 3, 4, 5 give three different orders
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (11, 3, 5, 5), dtype=torch.uint8, generator=g), torch.arange(11))
    stats = {"mean": torch.tensor([100.0, 120.0, 90.0]), "std": torch.tensor([50.0, 60.0, 70.0])}
    loaders = [_loader(split, seed=s, **stats, **kw) for s in (3, 4, 5)]
    assert _one_gather(loaders) is one_gather
    for start in (0, 2):
        got = list(grouped_batches(loaders, epoch=7, start_step=start))
        want = list(zip(*(ld.batches(7, start) for ld in loaders)))
        assert len(got) == len(want) == 3 - start
        for (x, y), singles in zip(got, want):
            assert torch.equal(x, torch.stack([b[0] for b in singles]))  # bit for bit
            assert torch.equal(y, torch.stack([b[1] for b in singles]))
    assert not torch.equal(got[0][1][0], got[0][1][1])  # the copies' orders do differ


def test_copies_over_different_images_or_normalisations_are_gathered_one_by_one() -> None:
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (8, 1, 4, 4), dtype=torch.uint8, generator=g), torch.arange(8))
    other = Split(split.images.clone(), split.labels.clone())
    one = {"mean": torch.tensor([9.0]), "std": torch.ones(1)}
    assert _one_gather([_loader(split, **one), _loader(split, seed=4, **one)])
    assert not _one_gather([_loader(split, **one), _loader(other, seed=4, **one)])
    assert not _one_gather([_loader(split, **one), _loader(split, seed=4, normalize="mean", **one)])
