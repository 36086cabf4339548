"""Hostile input (issue 5): every malformed or invalid spec gives exit code 2 and one exact, located message.

The corpus is data, tests/hostile/corpus.yaml: each case holds a spec (text, bytes in hex for binary and
non-UTF-8 input, or parts repeated to build very long input) and the message it must give, word for word:
the first line (file:line:col: error: ...), the caret line under the source excerpt, and the hint.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

import archlang
from archlang.cli import main
from archlang.errors import ArchlangError

CORPUS_PATH = Path(__file__).parent / "hostile" / "corpus.yaml"
CORPUS: list[dict[str, Any]] = yaml.safe_load(CORPUS_PATH.read_text(encoding="utf-8"))

# The source excerpt's gutter: "  12 | " before the line, as many spaces before the caret.
GUTTER = 7
# A readable message: no line of it, the excerpt included, is longer than this.
MAX_LINE = 200
# Accepting or rejecting any spec takes less than this (issue 5).
MAX_SECONDS = 1.0


def spec_bytes(case: dict[str, Any]) -> bytes:
    if "spec_hex" in case:
        return bytes.fromhex(case["spec_hex"])
    if "spec_parts" in case:
        return "".join(text * times for text, times in case["spec_parts"]).encode("utf-8")
    return case["spec"].encode("utf-8")


def uses_file(case: dict[str, Any]) -> bool:
    return bool(case.get("file")) or "spec_hex" in case


def run_case(case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str, float]:
    """Run `archlang compile` on a case in-process: (exit code, stdout, stderr, seconds)."""
    if uses_file(case):
        path = tmp_path / "case.arch"
        path.write_bytes(spec_bytes(case))
        target = str(path)
    else:
        target = spec_bytes(case).decode("utf-8")
    args = [a.replace("{tmp}", str(tmp_path)) for a in case.get("args", [])]
    capsys.readouterr()
    start = time.process_time()
    code = main(["compile", target, *args])
    seconds = time.process_time() - start
    out, err = capsys.readouterr()
    return code, out, err, seconds


def test_corpus_is_large_and_names_are_unique():
    names = [case["name"] for case in CORPUS]
    assert len(names) >= 150
    assert len(set(names)) == len(names)


@pytest.fixture(scope="module", autouse=True)
def _warm_up():
    # Load the grammar and the CLI's imports once, so the time bound measures the spec alone.
    main(["params", "wrn(16, 1)", "--json"])
    archlang.compile_spec("wrn(16, 1)")


@pytest.mark.parametrize("case", CORPUS, ids=[case["name"] for case in CORPUS])
def test_hostile_spec_gives_one_exact_message(case: dict[str, Any], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err, seconds = run_case(case, tmp_path, capsys)
    saving = "--save" in case.get("args", [])
    assert code == 2, f"exit code {code}; stdout: {out[:300]}"
    # `compile --save` prints the layer table (the count is fine), then refuses to build.
    assert out == "" or saving
    assert "Traceback" not in err
    lines = err.rstrip("\n").split("\n")
    expected = case["error"].replace("{file}", str(tmp_path / "case.arch"))
    assert lines[0] == expected
    assert sum(": error: " in line for line in lines) == 1, "exactly one error message"
    rest = lines[1:]
    if case["caret"] is None:
        assert not rest or rest[0].startswith("hint: ")
    else:
        excerpt, caret_line, rest = rest[0], rest[1], rest[2:]
        assert excerpt[GUTTER - 2 : GUTTER] == "| "
        assert caret_line == " " * GUTTER + case["caret"]
    if case["hint"] is None:
        assert rest == []
    else:
        assert rest == [f"hint: {case['hint']}"]
    assert all(len(line) <= MAX_LINE for line in lines), "a message line too long to read"
    assert all(ch.isprintable() for line in lines for ch in line), "a control character reached the terminal"
    # --save imports torch (seconds, once per process) before the size check refuses the build.
    assert seconds < MAX_SECONDS or saving, f"took {seconds:.2f}s"
    for arg in case.get("args", []):
        if arg.startswith("{tmp}"):
            assert not Path(arg.replace("{tmp}", str(tmp_path))).exists(), "a refused network was saved"


ABSURD = [
    "wrn(depth=40, k=1000)",
    "seq(input(1000000, 8, 8), conv(1000000, kernel=1))",
    "mlp(depth=100, width=100000)",
    "seq(input(3, 32, 32), conv(64, kernel=64), conv(1000000, kernel=64))",
]


@pytest.mark.parametrize("spec", ABSURD)
def test_absurd_networks_are_counted_but_never_allocated(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """10^11+ parameters: `params` counts them from the IR; building refuses before torch sees them."""
    from archlang import compiler

    tracemalloc.start()
    try:
        compiled = archlang.compile_spec(spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert compiled.total_params > 10**11
    assert peak < 100 * 2**20, f"counting took {peak / 2**20:.0f} MiB"

    def refuse(*_: object) -> None:
        raise AssertionError("the torch builder was reached")

    monkeypatch.setattr("archlang.build.build", refuse)
    with pytest.raises(ArchlangError) as info:
        archlang.compile(spec)
    assert info.value.message == (f"the network has {compiled.total_params:,} parameters, more than the "
                                  f"{compiler.MAX_BUILD_PARAMS:,} archlang will allocate")
    assert info.value.render().startswith("<inline>:1:1: error: the network has ")


def _params_in_child(spec: str) -> tuple[int, str, str, int, float]:
    """`archlang params SPEC --json` in a fresh interpreter: exit code, stdout, stderr, its own peak RSS (KiB)
    and CPU seconds (not wall time: the machine may be shared).

    The peak is VmHWM of the child's own memory map: Linux carries ru_maxrss across exec, so a child of a
    large pytest process would report the parent's peak.
    """
    import subprocess
    import sys

    probe = ("import resource, sys\nfrom archlang.cli import main\ncode = main(['params', sys.argv[1], '--json'])\n"
             "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
             "status = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
             "print(status, usage.ru_utime + usage.ru_stime, file=sys.stderr)\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", probe, spec], check=False, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])
    *message, usage = done.stderr.rstrip("\n").split("\n")
    rss, cpu = usage.split()
    return done.returncode, done.stdout, "\n".join(message), int(rss), float(cpu)


# Issue 10's attack: an ~870-character sweep of 10,000 networks of ~49k layers each (it took 45 minutes and
# ~100 GB before the cap on a sweep's layers in all).
HUGE_SWEEP = ("let a = {" + ", ".join(str(i) for i in range(100)) + "}\nlet b = {"
              + ", ".join(str(i) for i in range(100)) + "}\n"
              "seq(input(4, 4, 4), repeat(7000 + a + b, seq(relu, relu, relu, relu, relu, relu)), gap, linear(2))")


LINUX_PEAK = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc")


@LINUX_PEAK
def test_a_sweep_too_large_in_all_is_refused_from_its_first_network():
    code, out, err, rss, cpu = _params_in_child(HUGE_SWEEP)
    assert code == 2 and out == ""
    lines = err.split("\n")
    assert lines[0] == ("<inline>:1:9: error: the sweep's 10,000 networks have about 490,050,000 layers in all, "
                        "more than the 1,000,000 archlang counts in one sweep")
    assert lines[-1] == "hint: split it into several specs, or sweep fewer or smaller networks"
    assert cpu < 10, f"{cpu:.1f} CPU seconds"
    assert rss < 200 * 1024, f"peak RSS {rss // 1024} MiB"


@LINUX_PEAK
def test_params_of_a_sweep_keeps_one_network_at_a_time():
    """30 networks of 3,000 layers: holding every summary took 17 MiB more than one network (measured); rows stream."""
    spec = ("let w = {" + ", ".join(str(i) for i in range(1, 31)) + "}\n"
            "seq(input(4, 4, 4), repeat(1000, seq(conv(w, kernel=1), relu)), gap, linear(2))")
    code, out, err, rss, _ = _params_in_child(spec)
    assert code == 0, err
    rows = yaml.safe_load(out)
    # conv 4->w, 999 convs w->w (1x1, no bias), linear w->2 with bias
    assert [row["params"] for row in rows] == [4 * w + 999 * w * w + 2 * w + 2 for w in range(1, 31)]
    baseline = _params_in_child("wrn(16, 1)")[3]
    assert rss - baseline < 8 * 1024, f"peak RSS {rss // 1024} MiB, {baseline // 1024} MiB for one small network"
