"""Weight averaging (``--average_from``): the run ends with the mean of its late iterates, resumes it, keeps
the last iterate beside it."""

from __future__ import annotations

import mlflow
import pytest
import torch
from conftest import train_tiny
from ignite.engine import Engine

from cosinetrack.workflows import TrainingCheckpoint, WeightAveraging, load_weights
from cosinetrack.workflows.checkpoint import LAST_ITERATE_FILENAME


def _net() -> torch.nn.Module:
    return torch.nn.Linear(1, 1, bias=False)


def _engine(net: torch.nn.Module, fail_at: int | None = None) -> Engine:
    """A trainer whose weight after iteration i is i, so the mean of iterates is known."""

    def step(engine, _):
        if engine.state.iteration == fail_at:
            raise RuntimeError("killed")
        with torch.no_grad():
            net.weight.fill_(float(engine.state.iteration))
        return {}

    return Engine(step)


@pytest.mark.parametrize(
    "max_iterations, average_from, every, mean, count",
    [
        (10, 0.5, 1, 7.5, 6),  # iterates 5..10
        (10, 0.5, 2, 7.0, 3),  # 5, 7, 9
        (10, 0.0, 1, 5.5, 10),  # 1..10 (the first averaged iteration is at least 1)
        (10, 0.95, 1, 9.5, 2),  # int(9.5) = 9: 9, 10
        (4, 0.5, 3, 2.0, 1),  # 2 only
    ],
)
def test_the_run_ends_with_the_mean_of_its_late_iterates(max_iterations, average_from, every, mean, count):
    net = _net()
    averaging = WeightAveraging(net, max_iterations=max_iterations, average_from=average_from, every=every)
    engine = _engine(net)
    averaging.attach(engine)
    engine.run(range(max_iterations), max_epochs=1)
    assert net.weight.item() == pytest.approx(mean)
    assert averaging.num_averaged == count
    assert averaging.last_iterate["weight"].item() == max_iterations


def test_the_mean_is_loaded_after_the_trainers_last_iteration_when_it_runs_fewer_than_max_iterations():
    net = _net()  # the bundles round max_iterations down to a multiple of val_interval: 10 -> 2 epochs of 4
    averaging = WeightAveraging(net, max_iterations=10, average_from=0.5)
    engine = _engine(net)
    averaging.attach(engine)
    engine.run(range(4), max_epochs=2)
    assert net.weight.item() == pytest.approx(6.5) and averaging.num_averaged == 4  # 5..8


def test_no_averaging_leaves_the_last_iterate():
    net = _net()
    averaging = WeightAveraging(net, max_iterations=10, average_from=None)
    engine = _engine(net)
    averaging.attach(engine)
    engine.run(range(10), max_epochs=1)
    assert net.weight.item() == 10.0 and averaging.num_averaged == 0 and averaging.last_iterate is None
    assert averaging.state_dict() == {}


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"max_iterations": 0}, "max_iterations must be >= 1"),
        ({"average_from": 1.0}, r"average_from must be in \[0, 1\)"),
        ({"average_from": -0.1}, r"average_from must be in \[0, 1\)"),
        ({"every": 0}, "every must be >= 1"),
    ],
)
def test_settings_are_checked_when_the_config_is_parsed(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        WeightAveraging(_net(), **{"max_iterations": 10, "average_from": 0.5, **kwargs})


def _trained(tmp_path, fail_at=None, resume=False):
    """Ten iterations with averaging from 5, saved every iteration; ``fail_at`` kills the run there."""
    net = _net()
    averaging = WeightAveraging(net, max_iterations=10, average_from=0.5)
    engine = _engine(net, fail_at)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    checkpoint = TrainingCheckpoint(
        str(tmp_path), net, optimizer, save_interval=1, resume=resume, weight_averaging=averaging
    )
    averaging.attach(engine)  # before the checkpoint: an iteration is in the mean before it is saved
    checkpoint.attach(engine)
    engine.run(range(10), max_epochs=1)
    return net, averaging


def test_a_killed_run_resumes_the_mean_and_writes_the_last_iterate_beside_the_final_weights(tmp_path):
    with pytest.raises(RuntimeError, match="killed"):
        _trained(tmp_path, fail_at=8)  # iterations 1..7 done and saved, 5..7 in the mean
    assert not (tmp_path / "model_final.pt").exists()
    net, averaging = _trained(tmp_path, resume=True)
    assert averaging.num_averaged == 6 and net.weight.item() == pytest.approx(7.5)  # not 9: 5..7 came back
    final, last = _net(), _net()
    load_weights(final, str(tmp_path / "model_final.pt"))
    load_weights(last, str(tmp_path / LAST_ITERATE_FILENAME))
    assert final.weight.item() == pytest.approx(7.5) and last.weight.item() == 10.0


def test_training_checkpoint_takes_only_a_weight_averaging(tmp_path):
    net = _net()
    with pytest.raises(TypeError, match="weight_averaging: expected a WeightAveraging"):
        TrainingCheckpoint(str(tmp_path), net, torch.optim.SGD(net.parameters(), lr=0.1), weight_averaging=0.5)


@pytest.mark.parametrize("average_from, averaged", [("0.5", 3), (None, 0)])
def test_the_bundle_key_average_from_reaches_the_run(tmp_path, average_from, averaged):
    tiny = ["--image_size", "[32,32]", "--num_levels", "3", "--num_filters", "8", "--num_threads", "1"]
    tiny += ["--synthetic#num_cases", "4", "--synthetic#image_size", "[40,48]", "--synthetic#num_frames", "6"]
    if average_from is not None:
        tiny += ["--average_from", average_from]
    _, uri, out, _ = train_tiny(tmp_path, ["bundles/lv_mri/train.json"], *tiny)
    state = torch.load(out / "resume_4.pt", map_location="cpu", weights_only=True)
    assert int(state["weight_averaging"]["n_averaged"]) == averaged if averaged else "weight_averaging" not in state
    assert (out / LAST_ITERATE_FILENAME).exists() == bool(averaged)
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "model_final.pt" in logged and (LAST_ITERATE_FILENAME in logged) == bool(averaged)
    if averaged:  # iterates 2, 3, 4: the final weights are their mean, not the last one
        final = torch.load(out / "model_final.pt", map_location="cpu", weights_only=True)["model"]
        last = torch.load(out / LAST_ITERATE_FILENAME, map_location="cpu", weights_only=True)["model"]
        assert any(not torch.equal(final[k], last[k]) for k in final)
        assert all(torch.equal(final[k], state["model"][k]) for k in final)  # the saved state ends with the mean
