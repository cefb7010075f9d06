"""The run-time defaults and choices the options tables, the API and the CLI share.

What a model family's published procedure fixes (clip length, input size, audio buffer)
lives with the family (``salcli.models``); the checkpoints, default files included, in
``salcli.models.registry``.
"""

from __future__ import annotations

# --- run-time defaults (CLI and API) -----------------------------------------
DEFAULT_FORMATS = ("png",)
DEFAULT_WARMUP = "mirror"  # "mirror" | "reference": the first of a family's policies
DEFAULT_DEVICE = "auto"  # "auto" | "cpu" | "cuda"
DEFAULT_BATCH_SIZE = 2  # clips per forward pass on CPU (fastest measured); CUDA: fitted to memory
DEFAULT_REUSE_BATCH_SIZE = 8  # clips per batch on CPU with overlap reuse (fastest measured)
DEFAULT_PRECISION = "auto"  # "auto" (bf16 where native, else fp32) | "fp32" | "bf16" | "fp16"
DEFAULT_FUSION = "bilinear"  # AViNet fusion when the checkpoint does not say
DEFAULT_H5_DTYPE = "float16"
DEFAULT_OUTPUT_SUBDIR = "saliency"  # outputs go to <input's folder>/saliency/ by default
OVERLAY_ALPHA = 0.5  # weight of the heat map in the overlay MP4
FALLBACK_FPS = 25.0  # frames/s of a video whose container states no usable rate
DEFAULT_FOLDER_FPS = 30.0  # frames/s of a folder of frames when none is given
MAX_FPS = 1000.0  # frames/s; rates above this are taken as broken metadata

# --- file names ---------------------------------------------------------------
RECORD_SUFFIX = ".salcli.json"  # <stem>.salcli.json: a video's completion record
OVERLAY_SUFFIX = "_saliency.mp4"  # <stem>_saliency.mp4: the overlay video
CLAIM_SUFFIX = ".salcli.claim"  # .<stem>.salcli.claim: a run is computing the video
CLAIM_LOCK_SUFFIX = ".lock"  # .<stem>.salcli.claim.lock: a run is taking a dead claim over
SALIENCY_VIDEO_SUFFIX = ".mp4"  # <stem>.mp4: the maps as a grey video (format "video")

# --- claims (salcli.corpus.claims) --------------------------------------------
DEFAULT_LEASE_S = 600.0  # s without a heartbeat before another host's claim is taken over
HEARTBEATS_PER_LEASE = 20  # heartbeat period = lease / this (30 s by default)

WARMUP_POLICIES = ("mirror", "reference")
FORMATS = ("png", "h5", "mp4", "video")
H5_DTYPES = ("float16", "float32")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FUSIONS = ("bilinear", "transformer", "concat")
