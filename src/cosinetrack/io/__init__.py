"""Writing results: atomic files and folders, NIfTI predictions, CTC result folders."""

from cosinetrack.io.atomic import (
    atomic_directory,
    atomic_file,
    atomic_write_text,
    refuse_output_over_inputs,
    remove_stale_temporaries,
)
from cosinetrack.io.ctc import (
    RES_TRACK,
    CTCResultWriter,
    CTCValidation,
    ctc_mask_name,
    relabel_ctc_masks,
    tracks_from_masks,
    validate_ctc_result,
    write_ctc_result,
    write_track_table,
)

__all__ = [
    "RES_TRACK",
    "CTCResultWriter",
    "CTCValidation",
    "atomic_directory",
    "atomic_file",
    "atomic_write_text",
    "ctc_mask_name",
    "refuse_output_over_inputs",
    "remove_stale_temporaries",
    "relabel_ctc_masks",
    "tracks_from_masks",
    "validate_ctc_result",
    "write_ctc_result",
    "write_track_table",
]
