"""The benchmark commands run end to end at a tiny size (their figures are not checked here:
benchmarks are measured by `make bench`, never asserted in tests)."""

from __future__ import annotations

import pytest

from benchmarks import bench_compare, bench_invoice


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("METERQL_BENCH_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def test_invoice_benchmark_runs_both_catalogs(data, capsys) -> None:
    for catalog in ("light", "full"):
        size = ["--events", "20000", "--customers", "50", "--repeat", "1"]
        results = bench_invoice.main([*size, "--catalog", catalog])
        assert results["invoices"] == 100 and results["line_items"] > 0
    assert "invoice run / (a) bare scan" in capsys.readouterr().out


def test_history_benchmark_runs_a_year_and_the_reads(data, capsys) -> None:
    from benchmarks import bench_history

    results = bench_history.main(["--events", "20000", "--customers", "50", "--months", "2"])
    assert [r["stored"] for r in results["runs"]] == [100, 100, 150, 150]
    assert set(results["reads"]) >= {"invoice list", "invoice list --format json"}
    assert "| 2026-03-15T01:00:00Z |" in capsys.readouterr().out


def test_compare_benchmark_fills_every_row(data, capsys) -> None:
    bench_compare.main(
        ["--events", "20000", "--customers", "50", "--repeat", "1", "--sample", "3"]
        + ["--no-ingest", "--skip", "polars", "--skip", "chdb"]
        + ["--skip", "polars_light", "--skip", "chdb_light"]
    )
    out = capsys.readouterr().out
    assert "skipped: failed" not in out and "DIFFERS" not in out
    assert "| hand-written DuckDB SQL | " in out and "1.00x" in out
    assert "light catalog's 3 aggregates (no rating) |" in out and "light invoice run / this" in out


def test_wide_files_benchmark_runs(data, capsys) -> None:
    pytest.importorskip("numpy")  # the `bench` extra
    from benchmarks import bench_wide

    bench_wide.main(["--events", "20000", "--keys", "100", "--reps", "1"])
    out = capsys.readouterr().out
    assert "| compiled, wide files, metadata cache |" in out
    assert "| compiled, rare-keys map files |" in out
    assert "| compiled, rare key, rare-keys map files, metadata cache |" in out


def test_ingest_benchmark_runs_every_case(data) -> None:
    from benchmarks import bench_ingest

    rows = bench_ingest.run(5000, 1000, 500, reingest=True, n_rejected=1000, n_small_files=5)
    cases = [r["case"] for r in rows]
    assert "all rejected: ingest (rejects file)" in cases
    assert "small ndjson: 5 files (vs ONE)" in cases and "small parquet: 5 files (vs ONE)" in cases
    assert "parquet: ingest again (all duplicates)" in cases and len(cases) == 13


def test_ingest_memory_run_reports_peak_and_disk(data, capsys) -> None:
    from benchmarks import bench_ingest

    result = bench_ingest.measure_memory(3000)
    assert result["accepted"] == 3000 and result["peak_rss_gib"] > 0
    bench_ingest.report_memory(result)
    assert "GiB written to disk (files and spill)" in capsys.readouterr().out


def test_compaction_benchmark_runs(data, capsys) -> None:
    from benchmarks import bench_compact

    bench_compact.main(["--events", "3000", "--batches", "2", "--sparse-events", "500"])
    out = capsys.readouterr().out
    assert "| llm: compact | 3,000 |" in out and "| sparse keys: compact | 500 |" in out
    assert out.count("faster after |") == 2


def test_key_shapes_benchmark_runs_both_paths(capsys) -> None:
    from benchmarks import bench_key_shapes

    bench_key_shapes.main(["--events", "2000", "--shapes", "20x5,60x10"])
    out = capsys.readouterr().out
    assert "| 20 x 5 | 0.250 |" in out and "| 60 x 10 | 0.167 |" in out
    assert out.count("many-keys |") >= 1  # 60 x 10: the rule picks the many-keys path
