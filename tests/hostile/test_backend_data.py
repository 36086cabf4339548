"""Hostile data: every case ends in one message (exit 2) or a documented success, never a
traceback, with memory bounded before anything is decoded (issue 10, "Data").

Cases that could take memory run the CLI in a child process and assert its peak RSS, read with
resource.getrusage(RUSAGE_CHILDREN) by a wrapper process of its own (the test process's own
children would mix every earlier child into the figure).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import craft

from archlang.cli import main
from archlang.errors import ArchlangError
from archlang.train.data import StreamLoader, load_imagefolder, load_imagenet

REPO = Path(__file__).resolve().parents[2]
CIFAR_LIKE = "seq(input(3,32,32), conv(4), relu, global_avgpool, linear(2))"
GIB = 1 << 30
MEASURED = """
import json, resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"rc": p.returncode, "err": p.stderr,
                  "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _good(size: int = 32, per_class: int = 2, classes: tuple[str, ...] = ("a", "b")) -> dict[str, bytes]:
    return {f"{split}/{c}/{i}.png": craft.png(craft.image(hash((split, c, i)) % 1000, size))
            for split in ("train", "test") for c in classes for i in range(per_class)}


def _tree(root: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _error(path: Path, tmp: Path, expect: tuple[int, ...] | None = (3, 32, 32)) -> str:
    with pytest.raises(ArchlangError) as info:
        load_imagefolder(path, cache_dir=tmp / "cache", expect=expect)
    return info.value.render()


def _train(data: Path, tmp: Path, capsys: pytest.CaptureFixture[str], spec: str = CIFAR_LIKE) -> tuple[int, str]:
    rc = main(["train", spec, "--data-dir", str(data), "--recipe", "wrn-cifar", "--set", "dataset=imagefolder",
               "--cache-dir", str(tmp / "cache"), "--out", str(tmp / "runs"), "--no-progress", "--epochs", "1"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err.strip()


def _measured_train(data: Path, tmp: Path) -> dict:
    argv = [sys.executable, "-m", "archlang", "train", CIFAR_LIKE, "--data-dir", str(data), "--recipe", "wrn-cifar",
            "--set", "dataset=imagefolder", "--cache-dir", str(tmp / "cache"), "--out", str(tmp / "runs"),
            "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", MEASURED, *argv], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    result = json.loads(done.stdout)
    assert "Traceback" not in result["err"]
    print(f"peak RSS {result['rss_mb']:.0f} MB")
    return result


# ---- zip members -------------------------------------------------------------------------------


def test_zip_member_with_one_flipped_byte(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    members = _good()
    data = members["train/a/0.png"]
    zpath = tmp_path / "d.zip"
    craft.write_zip(zpath, [craft.stored(n, d) for n, d in members.items()])
    raw = bytearray(zpath.read_bytes())
    at = raw.index(data) + len(data) // 2
    raw[at] ^= 0x01
    zpath.write_bytes(bytes(raw))
    rc, err = _train(zpath, tmp_path, capsys)
    assert rc == 2
    assert err.splitlines()[0] == (f"{zpath}:train/a/0.png: error: the zip member is damaged "
                                   "(Bad CRC-32 for file 'train/a/0.png')")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_encrypted_zip_member(tmp_path: Path) -> None:
    members = [craft.stored(n, d) for n, d in _good().items()]
    members[0].flags = 0x1
    craft.write_zip(tmp_path / "d.zip", members)
    assert _error(tmp_path / "d.zip", tmp_path) == (
        f"{tmp_path / 'd.zip'}:{members[0].name}: error: the zip member is encrypted\n"
        "hint: archlang reads zips without a password; re-create the zip unencrypted")


def test_deflate64_zip_member(tmp_path: Path) -> None:
    members = [craft.stored(n, d) for n, d in _good().items()]
    members[1].method = 9  # deflate64: the header says so; zipfile cannot decompress it
    craft.write_zip(tmp_path / "d.zip", members)
    assert _error(tmp_path / "d.zip", tmp_path).splitlines()[0] == (
        f"{tmp_path / 'd.zip'}:{members[1].name}: error: the zip member uses compression method 9 (deflate64), "
        "which Python's zipfile cannot read")


def test_zip_member_that_understates_its_size(tmp_path: Path) -> None:
    members = [craft.stored(n, d) for n, d in _good().items()]
    members[0].size -= 10  # declared smaller than it is: the read stops there and the CRC fails
    craft.write_zip(tmp_path / "d.zip", members)
    assert "error: the zip member is damaged" in _error(tmp_path / "d.zip", tmp_path)


def test_two_gib_of_zeros_in_a_2_mb_zip(tmp_path: Path) -> None:
    body = craft.zeros_deflated(GIB, 1 << 20)
    crc = craft.crc_of_zeros(GIB)
    members = [craft.stored(n, d) for n, d in _good().items()]
    members += [craft.Member("train/a/zz.png", body, crc, GIB, method=8),
                craft.Member("test/a/zz.png", body, crc, GIB, method=8)]
    zpath = tmp_path / "zeros.zip"
    craft.write_zip(zpath, members)
    assert zpath.stat().st_size < 2_200_000
    result = _measured_train(zpath, tmp_path)
    assert result["rc"] == 2 and result["rss_mb"] < 1000
    assert result["err"].splitlines()[0] in (
        f"{zpath}:{name}: error: 1.0 GiB is too big for an image of an in-memory dataset (at most 64.0 MiB)"
        for name in ("train/a/zz.png", "test/a/zz.png"))


def test_four_8000px_pngs_in_an_810_kb_zip(tmp_path: Path) -> None:
    bomb = craft.png_of_zeros(8000, 8000)
    members = {f"{split}/{c}/big.png": bomb for split in ("train", "test") for c in ("a", "b")}
    zpath = _zip(tmp_path / "big.zip", members)
    assert zpath.stat().st_size < 850_000
    start = time.monotonic()
    result = _measured_train(zpath, tmp_path)
    took = time.monotonic() - start
    assert result["rc"] == 2 and result["rss_mb"] < 1000 and took < 60
    first = result["err"].splitlines()[0]
    assert first.endswith("error: image is 8000x8000 pixels, expected 32x32 (the network's input)")
    assert not (tmp_path / "cache").exists()  # refused before decoding: nothing cached
    # Without a network to compare with, the size limit of an in-memory image refuses it.
    assert _error(zpath, tmp_path, expect=None).splitlines()[0].endswith(
        "error: image is 8000x8000 pixels, over the limit of 16,777,216 pixels for an in-memory dataset")


def test_decompression_bomb_in_zip_and_tree(tmp_path: Path) -> None:
    members = _good()
    members["train/a/bomb.png"] = craft.png_of_zeros(20000, 20000, channels=1)
    zpath = _zip(tmp_path / "bomb.zip", members)
    for where in (zpath, _tree(tmp_path / "tree", members)):
        text = _error(where, tmp_path, expect=None)
        assert text == (f"{where}{':' if where.is_file() else '/'}train/a/bomb.png: error: image refused as a "
                        "decompression bomb (over 178,956,970 pixels)\n"
                        "hint: remove the file; it is not an image of this dataset")


def test_decompression_bomb_in_imagenet_stream(tmp_path: Path) -> None:
    members = {f"{s}/n01/{i}.JPEG": craft.jpeg(craft.image(i, 40)) for s in ("train", "val") for i in range(2)}
    root = _tree(tmp_path / "imagenet", members)
    (root / "train/n01/bomb.png").write_bytes(craft.png_of_zeros(20000, 20000, channels=1))
    train, _, _ = load_imagenet(root, size=32, resize=36, scale=(0.08, 1.0))
    loader = StreamLoader(train, batch_size=8, mean=torch.zeros(3), std=torch.ones(3), normalize="scale",
                          device=torch.device("cpu"), train=True, workers=0)
    with pytest.raises(ArchlangError) as info:
        list(loader.batches(0))
    assert info.value.render().splitlines()[0] == (
        f"error: {root}/train/n01/bomb.png: image refused as a decompression bomb (over 178,956,970 pixels)")
    # Under PIL's own limit but over ours (8000x9000 = 72M pixels): refused from the header too.
    (root / "train/n01/bomb.png").write_bytes(craft.png_of_zeros(8000, 9000, channels=1))
    with pytest.raises(ArchlangError) as info:
        list(loader.batches(0))
    assert info.value.render().splitlines()[0] == (
        f"error: {root}/train/n01/bomb.png: image is 8000x9000 pixels, over the limit of 67,108,864 pixels "
        "(a decompression bomb?)")


def test_fifo_in_imagenet_stream_does_not_hang(tmp_path: Path) -> None:
    members = {f"{s}/n01/{i}.JPEG": craft.jpeg(craft.image(i, 40)) for s in ("train", "val") for i in range(2)}
    root = _tree(tmp_path / "imagenet", members)
    os.mkfifo(root / "train/n01/fifo.JPEG")
    train, _, _ = load_imagenet(root, size=32, resize=36, scale=(0.08, 1.0))
    loader = StreamLoader(train, batch_size=8, mean=torch.zeros(3), std=torch.ones(3), normalize="scale",
                          device=torch.device("cpu"), train=True, workers=0)
    with pytest.raises(ArchlangError, match="fifo.JPEG: not a regular file"):
        list(loader.batches(0))


# ---- trees ------------------------------------------------------------------------------------


def test_symlinked_class_folders_are_followed(tmp_path: Path) -> None:
    members = _good()
    elsewhere = _tree(tmp_path / "elsewhere", {k.replace("train/b/", ""): v for k, v in members.items()
                                               if k.startswith("train/b/")})
    root = _tree(tmp_path / "tree", {k: v for k, v in members.items() if not k.startswith("train/b/")})
    (root / "train/b").symlink_to(elsewhere, target_is_directory=True)
    data = load_imagefolder(root, cache_dir=tmp_path / "cache")
    assert data.classes == ["a", "b"] and sorted(data.train.labels.tolist()) == [0, 0, 1, 1]


def test_train_folder_itself_a_symlink(tmp_path: Path) -> None:
    members = _good()
    real = _tree(tmp_path / "real", {k: v for k, v in members.items() if k.startswith("train/")})
    root = _tree(tmp_path / "tree", {k: v for k, v in members.items() if k.startswith("test/")})
    (root / "train").symlink_to(real / "train", target_is_directory=True)
    data = load_imagefolder(root, cache_dir=tmp_path / "cache")
    assert len(data.train) == 4 and len(data.test) == 4


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree", _good())
    (root / "train/a/loop").symlink_to(root / "train", target_is_directory=True)
    text = _error(root, tmp_path)
    assert text.splitlines()[0] == f"{root}/train/a/loop: error: a symlink loop in the ImageFolder tree"


def test_macosx_resource_forks_are_ignored(tmp_path: Path) -> None:
    members = _good()
    members.update({f"__MACOSX/{k.rsplit('/', 1)[0]}/._{k.rsplit('/', 1)[1]}": b"\x00\x05\x16\x07 fork"
                    for k in list(members)})
    members["train/a/._0.png"] = b"\x00\x05\x16\x07 fork"
    data = load_imagefolder(_zip(tmp_path / "mac.zip", members), cache_dir=tmp_path / "cache")
    assert data.classes == ["a", "b"] and len(data.train) == 4 and len(data.test) == 4


def test_tampered_cache_is_rebuilt_with_a_notice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zpath = _zip(tmp_path / "d.zip", _good())
    first = load_imagefolder(zpath, cache_dir=tmp_path / "cache")
    (cache,) = (tmp_path / "cache").iterdir()
    raw = bytearray(cache.read_bytes())
    raw[-1] ^= 0xFF  # the last byte: a label or a pixel
    cache.write_bytes(bytes(raw))
    again = load_imagefolder(zpath, cache_dir=tmp_path / "cache")
    assert capsys.readouterr().err == f"notice: decoded cache {cache} is damaged (checksum mismatch); rebuilding it\n"
    assert torch.equal(again.train.images, first.train.images) and torch.equal(again.test.labels, first.test.labels)
    cache.write_bytes(b"garbage")
    load_imagefolder(zpath, cache_dir=tmp_path / "cache")
    assert "is damaged (unreadable: SafetensorError); rebuilding it" in capsys.readouterr().err
    load_imagefolder(zpath, cache_dir=tmp_path / "cache")
    assert capsys.readouterr().err == ""  # the rebuilt cache is trusted


# ---- more of our own ------------------------------------------------------------------------------


def test_empty_class_folder(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree", _good())
    (root / "train/c").mkdir()
    assert _error(root, tmp_path) == (
        f"{root}: error: class folder train/c/ has no images\nhint: image files end in .jpg, .jpeg, .png, .bmp, "
        ".ppm, .pgm, .tif, .tiff, .webp; remove the folder or add images")


def test_non_image_files_are_skipped_and_garbage_named_png_is_refused(tmp_path: Path) -> None:
    members = _good()
    members["train/a/notes.txt"] = b"not an image"
    data = load_imagefolder(_tree(tmp_path / "ok", members), cache_dir=tmp_path / "cache")
    assert len(data.train) == 4
    members["train/a/x.png"] = b"not an image"
    root = _tree(tmp_path / "bad", members)
    first = _error(root, tmp_path).splitlines()[0]
    assert first.startswith(f"{root}/train/a/x.png: error: corrupted image (cannot identify image file <_io.BytesIO")


def test_truncated_jpeg(tmp_path: Path) -> None:
    members = {k.replace(".png", ".jpg"): craft.jpeg(craft.image(i)) for i, k in enumerate(_good())}
    members["train/a/0.jpg"] = members["train/a/0.jpg"][:300]
    root = _tree(tmp_path / "tree", members)
    assert _error(root, tmp_path) == (f"{root}/train/a/0.jpg: error: corrupted image (Truncated File Read)\n"
                                      "hint: re-extract or re-download the dataset")


def test_zero_images(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "train/a").mkdir(parents=True)
    (root / "test/a").mkdir(parents=True)
    assert _error(root, tmp_path) == (f"{root}: error: no images found in ImageFolder layout\n"
                                      "hint: expected train/<class>/*.jpg and test/<class>/*.jpg")


def test_test_class_missing_from_train(tmp_path: Path) -> None:
    members = _good()
    members["test/zebra/0.png"] = members["test/a/0.png"]
    root = _tree(tmp_path / "tree", members)
    assert _error(root, tmp_path).splitlines()[0] == (
        f"{root}: error: test classes ['zebra'] do not exist in train/")


def test_grayscale_images_for_an_rgb_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    members = {k: craft.png(craft.image(i, channels=1)) for i, k in enumerate(_good())}
    rc, err = _train(_zip(tmp_path / "gray.zip", members), tmp_path, capsys)
    assert rc == 2 and err.splitlines()[0].endswith("error: the images are grayscale but the network takes 3 channels")


def test_color_image_among_grayscale(tmp_path: Path) -> None:
    members = {k: craft.png(craft.image(i, channels=1)) for i, k in enumerate(_good())}
    members["train/b/1.png"] = craft.png(craft.image(7))
    root = _tree(tmp_path / "tree", members)
    text = _error(root, tmp_path, expect=(1, 32, 32))
    assert text.splitlines()[0] == (f"{root}/train/b/1.png: error: a color image among grayscale images "
                                    "(or in a dataset for a 1-channel network)")


def test_images_of_two_sizes(tmp_path: Path) -> None:
    members = _good()
    members["test/b/1.png"] = craft.png(craft.image(3, size=30))
    root = _tree(tmp_path / "tree", members)
    assert _error(root, tmp_path, expect=None).splitlines()[0] == (
        f"{root}/test/b/1.png: error: image is 30x30 pixels, expected 32x32 (the first image's size)")


def test_a_zip_that_is_not_a_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "fake.zip").write_bytes(b"this is text\n" * 100)
    rc, err = _train(tmp_path / "fake.zip", tmp_path, capsys)
    assert rc == 2 and err == (f"{tmp_path / 'fake.zip'}: error: not a readable zip file (File is not a zip file)\n"
                               "hint: the file may be truncated; copy or download it again")


def test_truncated_zip(tmp_path: Path) -> None:
    zpath = _zip(tmp_path / "d.zip", _good())
    zpath.write_bytes(zpath.read_bytes()[: zpath.stat().st_size // 2])
    assert _error(zpath, tmp_path).startswith(f"{zpath}: error: not a readable zip file")


def test_unreadable_image_file(tmp_path: Path) -> None:
    # Tests run as root, for whom chmod 000 changes nothing: a dangling link cannot be read by anyone.
    root = _tree(tmp_path / "tree", _good())
    (root / "train/a/gone.png").symlink_to(tmp_path / "nowhere.png")
    assert _error(root, tmp_path) == (
        f"{root}/train/a/gone.png: error: cannot read the image file (No such file or directory)")


def test_fifo_named_like_an_image(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree", _good())
    os.mkfifo(root / "train/a/fifo.png")
    assert _error(root, tmp_path) == (
        f"{root}/train/a/fifo.png: error: not a regular file (a FIFO, socket or device named like an image)\n"
        "hint: remove it from the dataset folder")


def test_imagefolder_copy_of_cifar10_with_three_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _tree(tmp_path / "cifar10", _good(classes=("a", "b", "c")))
    rc = main(["train", "wrn(depth=10, k=1)", "--data-dir", str(root), "--cache-dir", str(tmp_path / "cache"),
               "--out", str(tmp_path / "runs"), "--no-progress"])
    assert rc == 2 and capsys.readouterr().err.strip() == (
        f"{root}: error: the ImageFolder copy of cifar10 has 3 classes in train/, cifar10 has 10")


def test_decoded_size_over_the_memory_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHLANG_DATA_MEMORY", "10000")
    zpath = _zip(tmp_path / "d.zip", _good())
    assert _error(zpath, tmp_path) == (
        f"{zpath}: error: 4 images of 3x32x32 need 12.0 KiB decoded, over the budget of 9.8 KiB\n"
        "hint: set ARCHLANG_DATA_MEMORY (bytes) to allow more, or use a smaller dataset")


def test_analysis_of_a_run_whose_resolved_recipe_is_a_list(tmp_path: Path) -> None:
    import archlang
    from archlang.train.data.select import analysis_loader

    compiled = archlang.compile_spec("mlp(depth=2, width=8)")
    with pytest.raises(ArchlangError) as info:
        analysis_loader(compiled, [1, 2, 3], {"data_dir": 5}, dataset=None, recipe=None, data_dir=None,  # type: ignore[arg-type]
                        split="test", subset=None, batch_size=10)
    assert info.value.render() == ("error: the run's resolved recipe is not a mapping of fields\n"
                                   "hint: pass --recipe NAME")
