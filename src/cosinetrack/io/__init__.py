"""Writing results: atomic files and folders, NIfTI predictions, CTC result folders, GEFF lineage graphs."""

from cosinetrack.io.atomic import (
    SharedFolder,
    atomic_directory,
    atomic_file,
    atomic_write_text,
    current_umask,
    refuse_output_over_inputs,
    remove_stale_temporaries,
    shared_atomic_directory,
)
from cosinetrack.io.paths import require_dir, require_file
from cosinetrack.io.png import InstancePNGWriter, instance_palette, read_instance_png, write_instance_png

__all__ = [
    "atomic_write_text",
    "atomic_file",
    "atomic_directory",
    "refuse_output_over_inputs",
    "remove_stale_temporaries",
    "current_umask",
    "shared_atomic_directory",
    "SharedFolder",
    "require_file",
    "require_dir",
    "instance_palette",
    "write_instance_png",
    "read_instance_png",
    "InstancePNGWriter",
]
