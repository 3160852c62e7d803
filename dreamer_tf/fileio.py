"""File helpers shared by training, export and reports; standard library only,
so that the TensorFlow-free parts (the export runtime, reports) can use them."""

import json
import os
import tempfile
from pathlib import Path


def write_atomic(path, data):
    """Writes text or bytes to `path` through a temporary file, fsync and a rename,
    so that a reader (or a crash) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes the file private to its owner; ours are not secret
        with os.fdopen(fd, 'wb' if isinstance(data, bytes) else 'w') as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_json(path, data):
    write_atomic(path, json.dumps(data, indent=1) + '\n')


def read_jsonl(path):
    """The dict records of a JSON-lines file, skipping lines cut short by a hard kill."""
    records = []
    if not Path(path).exists():
        return records
    with open(path) as file:
        for line in file:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records
