#!/usr/bin/env python3
"""Refresh the golden files in tests/data from the shared reference folder.

    python scripts/sync_reference.py [REFERENCE_DIR]   # default: ../shared/reference

Copies the key/shape manifests (``*.keys.json``) and the authors' outputs
(``*.expected.npy``) and prints what changed; the tests then run without that folder.
"""

from __future__ import annotations

import filecmp
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "tests" / "data"


def main(argv: list[str]) -> int:
    src = Path(argv[1]) if len(argv) > 1 else ROOT.parent / "shared" / "reference"
    files = sorted([*src.glob("*.keys.json"), *src.glob("*.expected.npy")])
    if not files:
        print(f"no manifests or expected outputs in {src}", file=sys.stderr)
        return 1
    DEST.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = DEST / f.name
        state = "same" if target.exists() and filecmp.cmp(f, target, shallow=False) else "updated"
        if state == "updated":
            shutil.copyfile(f, target)
        print(f"{state:8s} {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
