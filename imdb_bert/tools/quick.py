"""make quick's first step: one of Google's BERT checkpoints as a Hub module, made once.

  python -m imdb_bert.tools.quick SOURCE MODULE_DIR

SOURCE is the checkpoint zip's URL, a local zip, or the folder unzipped from it. When
MODULE_DIR already holds a module, nothing is downloaded or exported again.
"""
import argparse
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile

DOWNLOAD_TIMEOUT_SECONDS = 60


def is_url(source):
    return source.startswith(("http://", "https://"))


def download(url, folder):
    """Download `url` into `folder`; the file's path. Raises OSError saying what to do."""
    path = os.path.join(folder, os.path.basename(url) or "checkpoint.zip")
    print("Downloading %s" % url)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response, \
                open(path, "wb") as f:
            shutil.copyfileobj(response, f)
    except OSError as e:  # URLError, HTTPError and timeouts are OSErrors
        raise OSError("cannot download %s (%s). Without that network, download the zip "
                      "elsewhere and give it, or the folder unzipped from it: "
                      "make quick QUICK_MODEL=PATH" % (url, getattr(e, "reason", e))) from None
    return path


def make_module(source, module_dir):
    """Export `source` to `module_dir`, through a temporary folder beside it: an
    interrupted download or export leaves no half module that a rerun would take as done."""
    parent = os.path.dirname(os.path.abspath(module_dir))
    os.makedirs(parent, exist_ok=True)
    # Imported here: TensorFlow's seconds of start-up only when a module is made.
    from imdb_bert.tools import make_hub_module
    with tempfile.TemporaryDirectory(dir=parent, prefix=".quick-") as work:
        checkpoint = download(source, work) if is_url(source) else source
        print("Exporting %s to a Hub module in %s" % (checkpoint, module_dir))
        make_hub_module.export_google_checkpoint(checkpoint, os.path.join(work, "module"))
        os.replace(os.path.join(work, "module"), module_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="the checkpoint zip's URL, a local zip or a folder")
    parser.add_argument("module_dir", help="where the Hub module is kept between runs")
    args = parser.parse_args(argv)
    if os.path.isfile(os.path.join(args.module_dir, "saved_model.pb")):
        print("Using the Hub module made earlier in %s" % args.module_dir)
        return 0
    if os.path.isdir(args.module_dir) and os.listdir(args.module_dir):
        print("error: %s holds files but no Hub module; delete it, or give make quick "
              "another folder: QUICK_HUB=DIR" % args.module_dir, file=sys.stderr)
        return 2
    try:
        make_module(args.source, args.module_dir)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
