"""Where a corpus stands in an output folder (``salcli status``): each video finished
(its record, with every output it lists), claimed by a live run (``salcli.corpus.claims``:
who, since when, last heartbeat), failed (the last line of the runs' ``--jsonl`` output
given, when kept) or missing; and the stale claims of dead runs, which the next run
takes over.

Without the corpus, the videos are those the output folder knows of: records and
claims (and failures of the runs given); with it (``inputs``, expanded as
``salcli predict`` expands them into that output folder) every video of the corpus,
so those not started count as missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from salcli.corpus.claims import ClaimInfo, read_claim
from salcli.corpus.inputs import expand_inputs
from salcli.defaults import CLAIM_SUFFIX, DEFAULT_LEASE_S, DEFAULT_OUTPUT_SUBDIR, RECORD_SUFFIX
from salcli.errors import UsageError, escape
from salcli.media.records import claim_path, read_record, source_key

STATES = ("finished", "claimed", "failed", "missing")


@dataclass
class VideoState:
    """One video: its source (or ``<folder>/<stem>`` when unknown), its state, the
    live claim's holder ("claimed"), a stale claim's, the error ("failed")."""

    path: str
    state: str
    holder: dict | None = None
    stale: dict | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return {"path": self.path, "state": self.state, "holder": self.holder,
                "stale_claim": self.stale, "error": self.error}  # fmt: skip


@dataclass
class CorpusStatus:
    videos: list[VideoState]

    def counts(self) -> dict[str, int]:
        counts = {state: 0 for state in STATES}
        for video in self.videos:
            counts[video.state] += 1
        counts["stale_claims"] = sum(video.stale is not None for video in self.videos)
        return counts


def _finished(record: dict | None) -> bool:
    """A record whose outputs all exist."""
    outputs = (record or {}).get("outputs")
    return bool(outputs) and all(Path(p).exists() for p in outputs)


def _known_videos(output_dir: Path) -> list[tuple[Path, str, str | None]]:
    """(folder, stem, None: the source is read from the record or claim) of every record
    and claim below ``output_dir``."""
    found: dict[tuple[Path, str], None] = {}  # in the order found, once each
    for root, dirs, files in os.walk(output_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(root)
        for name in sorted(files):
            if name.startswith(".") and name.endswith(CLAIM_SUFFIX):
                stem = name[1 : -len(CLAIM_SUFFIX)]
            elif not name.startswith(".") and name.endswith(RECORD_SUFFIX):
                stem = name[: -len(RECORD_SUFFIX)]
            else:
                continue
            found.setdefault((here, stem), None)
    return [(folder, stem, None) for folder, stem in found]


def read_runs(paths: Iterable[str | Path]) -> dict[str, dict]:
    """The last JSON line per video (by absolute source path) of ``salcli predict
    --jsonl`` outputs, in the order given."""
    last: dict[str, dict] = {}
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise UsageError(f"{escape(str(path))}: cannot read ({err.strerror})") from None
        for line in text.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and item.get("path") and item.get("status"):
                last[source_key(Path(item["path"]))] = item
    return last


def _state(folder: Path, stem: str, source: str | None, runs: dict, lease_s: float):
    claim = read_claim(claim_path(folder, stem))
    record = read_record(folder, stem)
    path = source or (record or {}).get("source") or (claim.source if claim else None)
    name = path or str(folder / stem)
    stale = claim is not None and claim.stale(lease_s)
    video = VideoState(name, "missing", stale=_holder(claim) if stale else None)
    ran = runs.pop(source_key(Path(path)), None) if path else None
    if claim is not None and not stale:
        video.state, video.holder = "claimed", _holder(claim)
    elif _finished(record):
        video.state = "finished"
    elif ran is not None and ran.get("status") == "failed":
        video.state, video.error = "failed", ran.get("error")
    return video


def _holder(claim: ClaimInfo | None) -> dict | None:
    return None if claim is None else claim.as_dict()


def corpus_status(
    output_dir: str | Path,
    inputs: Sequence[str | Path] = (),
    *,
    recursive: bool = False,
    glob: str | None = None,
    runs: Sequence[str | Path] = (),
    lease: float = DEFAULT_LEASE_S,
) -> CorpusStatus:
    """Each video's state in ``output_dir`` (see the module docstring); ``runs``: JSON
    lines files of earlier runs (their failures); ``lease``: as the runs' ``--lease``."""
    out = Path(output_dir)
    if not out.is_dir():
        raise UsageError(f"{escape(str(out))}: no such output folder")
    if inputs:
        jobs = expand_inputs([str(i) for i in inputs], out, recursive=recursive,
                             pattern=glob, default_subdir=DEFAULT_OUTPUT_SUBDIR)  # fmt: skip
        videos = [(job.out_dir, job.stem, str(job.source)) for job in jobs]
    else:
        videos = _known_videos(out)
    failed = read_runs(runs)
    states = [_state(folder, stem, source, failed, lease) for folder, stem, source in videos]
    if not inputs:  # failures the folder holds nothing of
        states += [
            VideoState(item["path"], "failed", error=item.get("error"))
            for item in failed.values()
            if item.get("status") == "failed"
        ]
    return CorpusStatus(states)
