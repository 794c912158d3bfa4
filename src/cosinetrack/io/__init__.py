"""Writing results: atomic files and folders, NIfTI predictions, CTC result folders, GEFF lineage graphs."""

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
    write_ctc_subsequence,
    write_track_table,
)
from cosinetrack.io.geff import (
    GEFF_SUFFIX,
    CTCGraph,
    ctc_result_folders,
    ctc_result_graph,
    ctc_result_masks,
    export_geff_for_results,
    write_ctc_geff,
)

__all__ = [
    "RES_TRACK",
    "CTCResultWriter",
    "CTCValidation",
    "CTCGraph",
    "GEFF_SUFFIX",
    "atomic_directory",
    "atomic_file",
    "atomic_write_text",
    "ctc_mask_name",
    "ctc_result_folders",
    "ctc_result_graph",
    "ctc_result_masks",
    "export_geff_for_results",
    "refuse_output_over_inputs",
    "remove_stale_temporaries",
    "relabel_ctc_masks",
    "tracks_from_masks",
    "validate_ctc_result",
    "write_ctc_geff",
    "write_ctc_result",
    "write_ctc_subsequence",
    "write_track_table",
]
