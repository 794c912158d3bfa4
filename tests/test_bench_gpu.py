"""``benchmarks/bench_gpu.py`` (issue 9, goal 5) runs on CPU with tiny sizes: training and the three
end-to-end schedules of ``benchmarks/bench_end_to_end.py``, which must give the same tracking result."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench_gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module
    spec.loader.exec_module(module)
    return module


def _rows(report: str, first: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in report.splitlines() if line.startswith(first)]


def test_tiny_cpu_run_reports_training_and_all_schedules(bench_gpu) -> None:
    threads = torch.get_num_threads()
    try:
        report = bench_gpu.main(
            "--device cpu --tiny --threads 1 --precisions amp --cluster_workers 1 --warmup 0".split()
        )
    finally:
        torch.set_num_threads(threads)
    (train,) = _rows(report, "| bf16 autocast |")
    assert float(train[2]) > 0 and float(train[3]) > 0  # iterations/s, finite positive loss
    rows = _rows(report, "| amp |")
    assert [r[1] for r in rows] == ["serial", "overlap", "pool"]
    assert all(float(r[8]) > 0 for r in rows)  # frames/s
    assert len({r[10] for r in rows}) == 1 and int(rows[0][10]) > 0  # same tracks in every schedule


def test_cuda_without_a_gpu_is_a_clear_error(bench_gpu) -> None:
    if torch.cuda.is_available():
        assert bench_gpu.parse_args(["--device", "cuda"]).device == "cuda"
        return
    with pytest.raises(SystemExit, match="no CUDA device"):
        bench_gpu.main(["--device", "cuda", "--tiny"])
