"""The SavedModel that train.py exports for fast prediction, and finding it again.

<output-dir>/export/<timestamp>/ holds signature "serving_default" (inputs input_ids,
input_mask, segment_ids; outputs probabilities, log_probabilities, labels), the vocab in
assets/, and assets.extra/export_info.json with the exported global_step.
"""
import json
import os
import tempfile

from compat import tf
from model import serving_input_receiver_fn_builder
from outputs import read_json

EXPORT_INFO = "export_info.json"


def checkpoint_step(checkpoint_path):
    """468 for .../model.ckpt-468."""
    return int(checkpoint_path.rsplit("-", 1)[1])


def export_for_prediction(estimator, output_dir, max_seq_length):
    """Export the latest checkpoint; returns the export folder."""
    checkpoint = estimator.latest_checkpoint()
    with tempfile.TemporaryDirectory() as tmp:
        info_path = os.path.join(tmp, EXPORT_INFO)
        with open(info_path, "w") as f:
            json.dump({"global_step": checkpoint_step(checkpoint),
                       "max_seq_length": max_seq_length}, f)
        path = estimator.export_saved_model(
            os.path.join(output_dir, "export"), serving_input_receiver_fn_builder(max_seq_length),
            assets_extra={EXPORT_INFO: info_path}, checkpoint_path=checkpoint)
    return path.decode() if isinstance(path, bytes) else path


def newest_export(output_dir):
    """(folder, export info) of the newest export in output_dir, or (None, None)."""
    export_root = os.path.join(output_dir, "export")
    if not tf.io.gfile.isdir(export_root):
        return None, None
    stamps = sorted((name.rstrip("/") for name in tf.io.gfile.listdir(export_root)
                     if name.rstrip("/").isdigit()), key=int)
    for stamp in reversed(stamps):
        folder = os.path.join(export_root, stamp)
        info = read_json(os.path.join(folder, "assets.extra", EXPORT_INFO))
        if info is not None:
            return folder, info
    return None, None
