"""Per-video completion records: what makes a re-run skip finished videos.

After every output of a video is complete, ``<out_dir>/<stem>.salcli.json`` is written
(atomically, last). A video counts as finished when its record exists, names the
formats asked for, and every output it lists still exists. A run killed mid-video
leaves no record, so the next run redoes that video.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

RECORD_SUFFIX = ".salcli.json"


def record_path(out_dir: Path, stem: str) -> Path:
    return Path(out_dir) / f"{stem}{RECORD_SUFFIX}"


def is_complete(out_dir: Path, stem: str, formats: Sequence[str]) -> bool:
    path = record_path(out_dir, stem)
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not set(formats) <= set(rec.get("formats", [])):
        return False
    return all(Path(p).exists() for p in rec.get("outputs", []))


def write_record(out_dir: Path, stem: str, payload: dict) -> Path:
    path = record_path(out_dir, stem)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    data = dict(payload)
    data.setdefault("finished_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path
