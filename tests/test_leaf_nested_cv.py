"""The nested choice of ``benchmarks/bench_leaf_nested_cv.py``: each fold's clustering chosen on the other folds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_leaf_nested_cv.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("bench_leaf_nested_cv", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


def _rows(fold: int, sbd: float, abs_dic: float, n: int = 2) -> list[dict]:
    return [
        {"plant": f"f{fold}p{i}", "sbd": sbd, "abs_dic": abs_dic, "dic": -abs_dic, "fg_dice": 0.9}
        | {"n_pred": 10, "n_gt": 12}
        for i in range(n)
    ]


#: candidate 0 counts leaves badly but draws them well; candidate 1 the other way round. Candidate 1 wins on the
#: criterion in folds 1 and 2 but loses badly in fold 3, whose own choice must still be candidate 1.
SCORES = {
    0: [_rows(0, 0.78, 3.0), _rows(0, 0.76, 2.0)],
    1: [_rows(1, 0.78, 3.0), _rows(1, 0.76, 2.0)],
    2: [_rows(2, 0.80, 1.0), _rows(2, 0.60, 6.0)],
}


@pytest.mark.parametrize(
    "sbd, abs_dic, expected", [(0.80, 2.0, 0.0), (0.72, 2.0, 0.1), (0.80, 3.0, 0.5), (0.84, 1.0, -0.55)]
)
def test_shortfall_sums_the_relative_shortfalls_to_the_goal(sbd, abs_dic, expected):
    assert bench.shortfall(sbd, abs_dic) == pytest.approx(expected)


def test_nested_choice_never_uses_the_folds_own_plants():
    chosen, rows = bench.nested_choice(SCORES, "shortfall")
    # fold 1 chooses on folds 2 + 3: candidate 0 (0.79 / 2.0) against 1 (0.68 / 4.0)
    # fold 2 the same; fold 3 chooses on folds 1 + 2, where candidate 1 (0.76 / 2.0) beats 0 (0.78 / 3.0)
    assert chosen == [0, 0, 1]
    assert rows == SCORES[0][0] + SCORES[1][0] + SCORES[2][1]


def test_nested_choice_by_sbd_and_bad_arguments():
    chosen, _ = bench.nested_choice(SCORES, "sbd")
    assert chosen == [0, 0, 0]
    with pytest.raises(ValueError, match="criterion"):
        bench.nested_choice(SCORES, "dice")
    with pytest.raises(ValueError, match="at least two folds"):
        bench.nested_choice({0: SCORES[0]})
