"""Writing results: atomic files and folders, NIfTI predictions."""

from cosinetrack.io.atomic import atomic_directory, atomic_file, atomic_write_text

__all__ = ["atomic_directory", "atomic_file", "atomic_write_text"]
