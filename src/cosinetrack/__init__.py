"""cosinetrack: instance segmentation and tracking with cosine embeddings and recurrent hourglass networks.

The sub-packages follow the data flow of a frame:
``data`` (readers, synthetic generators) -> ``transforms`` -> ``networks`` -> ``losses`` (training)
or -> ``engines`` (streaming inference) -> ``metrics`` / ``io`` (writers), with ``handlers`` wiring
Ignite engines to MLflow and ``viz`` drawing the figures they log.
"""

__version__ = "0.1.0"
