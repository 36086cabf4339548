"""reproduce/stats.py against published t quantiles, and the seed statistics of gated_mnist and make_report
on small run folders written through archlang.runs (no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from archlang.runs import MetricsRow, RunFolder, RunIdentity, Summary

REPRODUCE = Path(__file__).resolve().parents[1] / "reproduce"


@pytest.fixture
def repro(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The reproduce scripts as modules, with jobs.RUNS pointing at an empty temp folder."""
    monkeypatch.syspath_prepend(str(REPRODUCE))
    import gated_mnist
    import jobs
    import make_report
    import stats

    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    return type("Repro", (), {"gated": gated_mnist, "jobs": jobs, "report": make_report, "stats": stats,
                              "runs": tmp_path / "runs"})


# Student t quantiles as printed in standard tables (e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2).
KNOWN = [(0.975, 1, 12.706205), (0.975, 2, 4.302653), (0.975, 4, 2.776445), (0.975, 10, 2.228139),
         (0.975, 30, 2.042272), (0.975, 100, 1.983972), (0.995, 4, 4.604095), (0.95, 7, 1.894579), (0.9, 3, 1.637744)]


@pytest.mark.parametrize(("p", "df", "expected"), KNOWN)
def test_t_quantile_matches_tables(repro, p: float, df: int, expected: float) -> None:
    assert repro.stats.t_quantile(p, df) == pytest.approx(expected, abs=2e-6)
    assert repro.stats.t_quantile(1 - p, df) == pytest.approx(-expected, abs=2e-6)


def test_t_central_is_a_probability(repro) -> None:
    st = repro.stats
    assert st.t_central(0.0, 3) == 0.0
    assert st.t_central(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| <= 1) = 1/2
    assert st.t_central(1e6, 6) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        st.t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        st.t_central(1.0, 0)


def test_mean_std_interval_and_paired(repro) -> None:
    st = repro.stats
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert st.sample_std(values) == pytest.approx(math.sqrt(2.5))
    lo, hi = st.t_interval(values)
    assert (lo, hi) == pytest.approx((3 - 2.776445 * math.sqrt(0.5), 3 + 2.776445 * math.sqrt(0.5)), abs=1e-5)
    assert st.t_interval([1.0]) is None and st.sample_std([1.0]) is None
    d = st.describe({3: 2.0, 1: 1.0})
    assert d["seeds"] == [1, 3] and d["values"] == [1.0, 2.0] and d["n"] == 2 and d["mean"] == 1.5
    below = st.paired({0: 1.0, 1: 1.1, 2: 0.9, 9: 5.0}, {0: 2.0, 1: 2.2, 2: 1.9})
    assert below["seeds"] == [0, 1, 2] and below["sign"] == "below 0"
    assert st.paired({0: 3.0, 1: 3.1}, {0: 1.0, 1: 1.0})["sign"] == "above 0"
    assert st.paired({0: 1.0, 1: 2.0, 2: 0.5}, {0: 1.5, 1: 1.0, 2: 0.6})["sign"] == "inconclusive"
    assert st.paired({0: 1.0}, {0: 2.0})["sign"] == "inconclusive"  # one seed: no interval


def _fake_run(path: Path, seed: int, errors: list[float], mean_k: float | None,
              seconds: float | list[float] = 2.0, finished: bool = True) -> None:
    """A run folder with metrics per epoch (test error `errors`) and, when finished, its summary."""
    run = RunFolder.create(path)
    ident = RunIdentity("mlp()", "mlp()", f"seed: {seed}\n", {"seed": seed, "epochs": len(errors)}, "0" * 64, None)
    run.write_identity(ident, {"dataset": "mnist"})
    per_epoch = seconds if isinstance(seconds, list) else [seconds] * len(errors)
    rows = [MetricsRow(epoch=i + 1, train_loss=1.0 / (i + 1) + seed * 0.01, train_error=1.0, test_error=e, lr=0.002,
                       seconds=s) for i, (e, s) in enumerate(zip(errors, per_epoch, strict=True))]
    run.rewrite_metrics(rows)
    if finished:
        run.write_summary(Summary(status="finished", epochs_done=len(errors), epochs=len(errors),
                                  final_test_error=errors[-1], best_test_error=min(errors), mean_k=mean_k))
    run.unlock()


def _cell(repro, kind: str, d: int, finals: dict[int, float], group_seconds: float = 3.0) -> None:
    """Seed 0 as the single run, the other seeds as one group's members (each: best epoch 0.5 below its final)."""
    name = f"gated-mnist/{kind}-d{d}"
    for seed, final in finals.items():
        folder = repro.runs / (name if seed == 0 else f"{name}-seed{seed}")
        _fake_run(folder, seed, [final + 0.5, final], 1.0 + seed if kind == "gated" else None,
                  seconds=2.0 if seed == 0 else group_seconds)


def test_results_rows_carry_seed_statistics(repro) -> None:
    _cell(repro, "gated", 10, {0: 1.5, 1: 1.6, 2: 1.4, 3: 1.5, 4: 1.55})
    _cell(repro, "residual", 10, {0: 1.8, 1: 1.9, 2: 1.75, 3: 1.85, 4: 1.8})
    _cell(repro, "residual", 20, {0: 1.8, 1: 1.7})  # only two seeds finished: still a row, n = 2
    _fake_run(repro.runs / "gated-mnist/residual-d20-seed3", 3, [9.0], None, finished=False)  # running: left out
    rows = {r["metric"]: r for r in repro.gated.results(repro.gated.jobs(depths=(10, 20)))}
    gated = rows["test error (%), gated, d=10"]
    assert gated["seeds"] == [0, 1, 2, 3, 4] and gated["n"] == 5
    assert gated["values"] == [1.5, 1.6, 1.4, 1.5, 1.55] and gated["mean"] == gated["ours"] == pytest.approx(1.51)
    assert gated["std"] == pytest.approx(0.074, abs=1e-3) and gated["paper_value"] == 1.60
    assert gated["best_epoch"]["values"] == [1.5, 1.6, 1.4, 1.5, 1.55]  # min over epochs: the last here
    assert rows["mean k, d=10"]["values"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert "--seeds 1,2,3,4" in gated["command"]
    partial = rows["test error (%), residual, d=20"]
    assert partial["seeds"] == [0, 1] and partial["n"] == 2 and "2 seeds" in partial["scale"]
    diff = rows["gated - residual test error (points), d=10"]
    assert diff["values"] == [-0.3, -0.3, -0.35, -0.35, -0.25] and diff["holds"] == "gated < residual"
    assert diff["interval"][1] < 0 and diff["paper_value"] == -0.04
    assert "gated - residual test error (points), d=20" not in rows  # no gated run at d=20
    assert not any("plain" in m for m in rows)


def test_best_epoch_is_the_minimum_over_epochs(repro) -> None:
    _fake_run(repro.runs / "gated-mnist/plain-d2", 0, [3.0, 1.2, 2.5], None)
    (row,) = repro.gated.results(repro.gated.jobs(depths=(2,), kinds=("plain",)))
    assert row["values"] == [2.5] and row["best_epoch"]["values"] == [1.2] and row["std"] is None


def test_projection_schedules_measured_and_estimated_jobs(repro) -> None:
    _cell(repro, "gated", 10, {0: 1.5, 1: 1.6}, group_seconds=3.0)  # group/single epoch time 1.5
    _cell(repro, "residual", 10, {0: 1.8})  # its group has not started: estimated at 1.5 x 2 s
    p = repro.gated.projected_wall_s(repro.gated.jobs(depths=(10,), kinds=("gated", "residual")), parallel=2)
    assert p["group_ratio"] == 1.5 and p["estimated_jobs"] == 1 and p["missing_jobs"] == 0
    # in order to the first free worker: gated single 4 s | gated group 6 s; residual single 4 -> 8 s; residual
    # group (estimated 6 s) -> 6 + 6 = 12 s
    assert p["median_epochs_s"] == 12.0 and p["remaining_s"] == 6.0


def test_projection_ratio_is_of_fastest_epochs(repro) -> None:
    """Epochs slowed by work beside them must not inflate the group/single ratio (it was 4.1-4.6x, not 2.0x)."""
    _fake_run(repro.runs / "gated-mnist/gated-d10", 0, [2.0, 2.0, 2.0], 1.0, seconds=[2.0, 2.0, 2.5])
    for seed in (1, 2):  # the group's first epoch ran alone, the others beside another training
        _fake_run(repro.runs / f"gated-mnist/gated-d10-seed{seed}", seed, [2.0] * 3, 1.0, seconds=[3.0, 9.0, 9.0])
    _fake_run(repro.runs / "gated-mnist/residual-d10", 0, [2.0, 2.0, 2.0], None, seconds=[2.0, 4.0, 4.0])
    p = repro.gated.projected_wall_s(repro.gated.jobs(depths=(10,), kinds=("gated", "residual")), parallel=1)
    assert p["group_ratio"] == 1.5 and p["estimated_jobs"] == 1
    # fastest: gated single 3 x 2 + group 3 x 3 + residual single 3 x 2 + its group 1.5 x 3 x 2 = 30 s
    assert p["fastest_epochs_s"] == 30.0


def test_figure_4_bands(repro, tmp_path: Path) -> None:
    _cell(repro, "gated", 2, {0: 1.5, 1: 1.6, 2: 1.7})
    path = tmp_path / "fig.png"
    repro.gated.plot(repro.gated.jobs(depths=(2,)), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _entry(metric: str, paper: float | None, **more) -> dict:
    return {"paper": "P", "table": "T1", "metric": metric, "paper_value": paper, "epochs": 100, "scale": "full",
            "command": "archlang train x", **more}


def test_render_shows_seeds_intervals_and_a_generated_verdict(repro) -> None:
    st, report = repro.stats, repro.report
    inside = _entry("test error (%), gated, d=10", 1.6, ours=1.62, **st.describe({0: 1.6, 1: 1.65, 2: 1.61}))
    above = _entry("test error (%), residual, d=10", 1.64, ours=2.0, **st.describe({0: 2.0, 1: 2.05, 2: 1.95}))
    paired = st.paired({0: 1.6, 1: 1.65, 2: 1.61}, {0: 2.0, 1: 2.05, 2: 1.95})
    diff = _entry("gated - residual test error (points), d=10", -0.04, ours=paired["mean"], paired=["gated", "residual"],
                  holds="gated < residual", **paired, command=None)
    single = {**_entry("test error (%), plain, d=10", 2.22, ours=2.5), "table": "T2"}
    text = report.render([inside, above, diff, single], {"P | T1": "A note."})
    assert "| 1.62 ± 0.026 | 0-2 (n=3) | [1.554, 1.686] |" in text
    assert "[-0.466, -0.294]: gated < residual" in text
    assert ("inside our 95% interval in 1 of 2 cells (gated, d=10); ours is above it in 1 (residual, d=10) "
            "and below it in 0") in text
    assert "paired by seed (paper: gated < residual); final epoch: as the paper at d=10, the opposite at none" in text
    assert "of these 1, were there no difference anywhere, at least one would exclude 0 with probability about 0.05" in text
    assert "A note." in text
    t2 = text.split("## P: T2")[1]
    assert "| metric | paper | ours | epochs | scale | command |" in t2 and "| 2.22 | 2.5 | 100 |" in t2
    assert "test error (%): ours - paper +0.28 (plain, d=10)" in t2


def test_a_cell_inside_only_through_one_seed_says_so(repro) -> None:
    st, report = repro.stats, repro.report
    spiked = _entry("test error (%), residual, d=100", 1.5, ours=2.3,
                    **st.describe({0: 1.9, 1: 2.0, 2: 1.95, 3: 3.6, 4: 2.05}))
    agreeing = _entry("test error (%), gated, d=100", 1.9, ours=1.9, **st.describe({0: 1.8, 1: 2.0, 2: 1.9}))
    text = report.render([spiked, agreeing], {})
    assert spiked["interval"][0] < 1.5  # the spike widens the interval over the paper's number
    assert "in 2 of 2 cells (residual, d=100, though all 5 seeds are above it; gated, d=100)" in text


def test_gaps_are_summarised_per_quantity(repro) -> None:
    rows = [_entry("last layer that matters, 50 layers", 15, ours=40), _entry("fraction of idle layers", 0.6, ours=0.5),
            _entry("test error (%), plain, d=50", 60.0, ours=88.0), _entry("test error (%), plain, d=100", 90.0, ours=89.0)]
    line = repro.report.verdict(rows)
    assert "last layer that matters: ours - paper +25 (50 layers); fraction of idle layers: ours - paper -0.1" in line
    assert "test error (%): ours - paper from -1 (plain, d=100) to +28 (plain, d=50), median +13.5" in line
    assert line.count("median") == 1  # never across a layer index and a fraction
    assert "(fraction of idle layers)" not in line  # a metric naming no cell is said once, as its quantity


def test_paired_line_judges_both_columns(repro) -> None:
    st, report = repro.stats, repro.report
    final = st.paired({0: 2.0, 1: 2.1, 2: 2.05}, {0: 2.0, 1: 2.05, 2: 2.1})
    best = st.paired({0: 1.9, 1: 1.95, 2: 1.92}, {0: 1.7, 1: 1.72, 2: 1.71})
    diff = _entry("gated - residual test error (points), d=20", -0.04, ours=final["mean"], paired=["gated", "residual"],
                  **final, best_epoch=best, command=None)
    line = report.verdict([diff])
    assert "final epoch: as the paper at no depth, the opposite at none, inconclusive" in line
    assert "best epoch: as the paper at no depth, the opposite at d=20," in line
    assert "of these 2, " in line and "about 0.10" in line


def test_render_keeps_the_committed_entries_rendering(repro) -> None:
    results = json.loads((REPRODUCE / "results.json").read_text())
    text = repro.report.render(results, {})
    for e in results:
        assert e["metric"] in text
    assert text.count("**Against the paper") == len({(e["paper"], e["table"]) for e in results})


def test_highway_table_1_rows(repro) -> None:
    import highway_cnn

    full, smoke = highway_cnn.jobs((0, 1, 2)), highway_cnn.jobs((0,), epochs=1, subset=600)
    assert {j.folder for j in full}.isdisjoint(j.folder for j in smoke)  # a smoke run never blocks the real one
    assert all("--channels-last" in j.extra and "--seed" in j.extra for j in full)
    for job, error in zip(full, (0.6, 0.55, 0.7)):
        _fake_run(job.folder, int(job.extra[job.extra.index("--seed") + 1]), [1.0, error - 0.1, error], None)
    mean, best = highway_cnn.results(full)
    assert mean["seeds"] == [0, 1, 2] and mean["values"] == [99.4, 99.45, 99.3] and mean["n"] == 3
    assert mean["best_epoch"]["values"] == [99.5, 99.55, 99.4]  # the paper does not say which epoch it reports
    assert mean["paper_value"] == 99.4 and mean["paper_std"] == 0.03 and mean["interval"][0] < 99.4
    assert best["ours"] == 99.45 and best["paper_value"] == 99.43 and "n" not in best
    assert "shortened" in mean["scale"] and "--seed 2" in mean["command"]  # 3 of 300 epochs
    text = repro.report.render([mean, best], {})
    assert "| 99.4 ± 0.03 | 99.38 ± 0.076 | 0-2 (n=3) |" in text and "| 99.48 ± 0.076, [" in text
    assert "inside our 95% interval in 1 of 1 cells" in text and "ours - paper +0.02" in text
    assert highway_cnn.results(smoke) == []


def test_a_changed_recipe_is_judged_against_its_baseline_and_the_gap_it_closes_is_named(repro) -> None:
    st, report = repro.stats, repro.report
    base = {0: 2.0, 1: 1.9, 2: 2.1}

    def changed(metric: str, paper: float, mine: dict[int, float], closes: bool = False) -> dict:
        return _entry(metric, paper, ours=st.describe(mine)["mean"], **st.describe(mine), baseline=st.describe(base),
                      vs_baseline=st.paired(mine, base), closes_gap=closes)

    towards = changed("test error (%), gated, d=50, a", 1.5, {0: 1.6, 1: 1.52, 2: 1.7}, closes=True)
    away = changed("test error (%), gated, d=50, b", 1.5, {0: 2.5, 1: 2.41, 2: 2.6})
    same = changed("test error (%), gated, d=50, c", 1.5, {0: 2.3, 1: 1.6, 2: 2.0})
    line = report.verdict([towards, away, same])
    assert ("towards the paper's number in 1 (test error (%), gated, d=50, a); away from it in 1 (test error (%), "
            "gated, d=50, b); not distinguishable from the baseline in 1 (test error (%), gated, d=50, c); "
            "closes the gap: test error (%), gated, d=50, a.") in line
    above_paper = changed("mean k, d=50, b", 3.0, {0: 2.5, 1: 2.41, 2: 2.6})  # baseline 2.0 below 3.0: up is towards
    assert "towards the paper's number in 1 (mean k, d=50, b)" in report.verdict([above_paper])
