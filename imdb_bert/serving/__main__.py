"""python -m imdb_bert.serving OUTPUT_DIR: add the ONNX copy to the newest export of a
folder train.py wrote, when train.py could not (too little free memory)."""
import argparse
import os

from imdb_bert.errors import UserError, run_script
from imdb_bert.output import folder_lock, run_settings
from imdb_bert.output.files import newest_export
from imdb_bert.serving import onnx_model
from imdb_bert.serving.export import add_onnx_copy


def main(argv=None):
    """python -m imdb_bert.serving OUTPUT_DIR: add the ONNX copy to the newest export of a
    folder train.py wrote, when train.py could not (too little free memory)."""
    parser = argparse.ArgumentParser(prog="python -m imdb_bert.serving",
                                     description=main.__doc__)
    parser.add_argument("output_dir")
    output_dir = parser.parse_args(argv).output_dir
    settings = run_settings.read_settings(output_dir)
    export_dir, _ = newest_export(output_dir)
    if settings is None or export_dir is None:
        raise UserError("%s holds no export of train.py (model_settings.json and export/): "
                        "run train.py first." % output_dir)
    folder_lock.lock_output_dir(output_dir)  # no train.py may write there meanwhile
    if os.path.exists(onnx_model.model_path(export_dir)):
        print("%s has its ONNX copy already." % export_dir)
    else:
        add_onnx_copy(export_dir, settings)
    return 0


if __name__ == "__main__":
    run_script(main)
