"""Task wings: what is specific to one task (its file formats, synthetic data, datasets, presets, metrics, pipeline)."""
