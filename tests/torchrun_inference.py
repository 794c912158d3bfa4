"""Run by ``tests/test_multi_gpu.py`` under ``torchrun --nproc_per_node 2`` (CPU, gloo): batch inference of
the three bundles' engines split over the ranks. Not a test module itself.

Usage: ``torchrun --nproc_per_node 2 tests/torchrun_inference.py DATA OUT``. ``DATA`` holds ``videos/``
(CTC sequences), ``photos/`` (plant photos) and ``lv/`` (a cine NIfTI data set); the results go to
``OUT/{cell,leaf,lv}``, and each rank writes ``OUT/rank<r>.json``: the inputs it processed, what each
call returned, and the error each rank got when rank 1 fails mid-way (``OUT/cell_failed`` must not exist).
"""

from __future__ import annotations

import json
import os
import sys

import torch

from cosinetrack.apps.cell import pipeline as video
from cosinetrack.apps.cell.pipeline import track_folder
from cosinetrack.apps.leaf import pipeline as instances
from cosinetrack.apps.leaf.cvppp import find_plant_images
from cosinetrack.apps.leaf.pipeline import segment_plants_to_folder
from cosinetrack.apps.lv_mri import pipeline as predict
from cosinetrack.apps.lv_mri.nifti import resolve_cases
from cosinetrack.apps.lv_mri.pipeline import predict_to_folder
from cosinetrack.distributed import destroy_distributed, get_rank
from cosinetrack.networks.stacked import RecurrentStackedHourglass


def _net(in_channels: int, out_channels: int) -> RecurrentStackedHourglass:
    torch.manual_seed(0)
    return RecurrentStackedHourglass(in_channels, out_channels, num_levels=2, num_filters=4)


def main(data: str, out: str) -> None:
    torch.set_num_threads(1)
    processed: dict[str, list[str]] = {"cell": [], "leaf": [], "lv": []}

    def record(module, name, task, key):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            processed[task].append(key(args))
            return original(*args, **kwargs)

        setattr(module, name, wrapper)
        return original

    track_part = record(video, "track_sequence_part", "cell", lambda a: a[1].name)
    record(instances, "segment_image_instances", "leaf", lambda a: float(a[1].sum()))
    record(predict, "predict_case", "lv", lambda a: float(a[1].sum()))

    cluster = {"min_samples": 3, "max_points": 500}
    report: dict = {"returned": {}}
    report["returned"]["cell"] = track_folder(
        _net(1, 4),
        os.path.join(data, "videos"),
        os.path.join(out, "cell"),
        None,
        image_size=(32, 32),
        clustering=cluster,
        progress_every=1,
    )
    report["returned"]["leaf"] = segment_plants_to_folder(
        _net(3, 4),
        find_plant_images(os.path.join(data, "photos")),
        os.path.join(out, "leaf"),
        None,
        (32, 32),
        cluster,
    )
    report["returned"]["lv"] = predict_to_folder(
        _net(1, 3),
        resolve_cases(os.path.join(data, "lv")),
        os.path.join(out, "lv"),
        None,
        (16, 16),
    )

    def fail_on_rank1(*args, **kwargs):
        if get_rank() == 1:
            raise RuntimeError("rank 1 broke")
        return track_part(*args, **kwargs)

    video.track_sequence_part = fail_on_rank1
    try:
        track_folder(
            _net(1, 4),
            os.path.join(data, "videos"),
            os.path.join(out, "cell_failed"),
            None,
            image_size=(32, 32),
            clustering=cluster,
        )
        report["failure"] = None
    except Exception as exc:
        report["failure"] = f"{type(exc).__name__}: {exc}"
    report["processed"] = processed
    with open(os.path.join(out, f"rank{get_rank()}.json"), "w") as f:
        json.dump(report, f)
    destroy_distributed()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
