"""The one atomic JSON writer: run files, metrics, judge caches and export metadata.

It imports neither TensorFlow nor Keras, so the export's metadata writer can use it too.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_json(path, value) -> None:
    """Writes ``value`` as indented JSON (keys in insertion order), atomically.

    A temporary file in the same directory is renamed over ``path``, so a reader
    (or a run killed mid-write) never sees half a file. Creates the parent directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
