"""Files the project writes into the output dir, each written atomically (a temporary
file, then a rename) so an interrupted run never leaves half a file behind."""
import json
import os

from compat import tf


def write_file(path, content):
    """Write `content` (str or bytes) to `path` atomically."""
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with tf.io.gfile.GFile(tmp, "wb" if isinstance(content, bytes) else "w") as f:
        f.write(content)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_json(path, obj):
    write_file(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path):
    """The JSON object at `path`, or None when there is no such file."""
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)
