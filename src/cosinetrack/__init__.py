"""cosinetrack: instance segmentation and tracking with cosine embeddings and recurrent hourglass networks.

A task-agnostic core whose sub-packages follow the data flow of a frame, ``data`` (clips, splits) ->
``transforms`` -> ``networks`` -> ``losses`` (training) or -> ``inference`` (streaming network steps, pair
segmenters) -> ``clustering`` -> ``tracking`` -> ``metrics`` / ``io``, with ``handlers`` wiring Ignite
engines to MLflow, ``viz`` drawing the figures they log and ``workflows`` around training (model files,
resume, reports, cross-validation); and one wing per task in ``apps`` (``cell``, ``leaf``, ``lv_mri``):
its file formats, synthetic data, datasets, presets, metrics and pipeline.
"""

__version__ = "0.1.0"
