"""Label conventions shared by the readers, transforms, losses and metrics (imports nothing of the package)."""

__all__ = ["IGNORE_LABEL"]

#: "No label here": unlabeled frames, padding added by fitting or augmentation. Losses and metrics skip
#: it; it is never background.
IGNORE_LABEL = -1
