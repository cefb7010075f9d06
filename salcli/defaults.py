"""One table of defaults and constants, read by the model, the API, the CLI and the docs.

Every figure here follows the published ViNet / AViNet pipeline (see the README,
"Conventions"). Change one here and it changes everywhere.
"""

from __future__ import annotations

# --- clips -----------------------------------------------------------------
CLIP_LEN = 32  # frames per clip (T)
INPUT_H = 224  # pixels, model input height
INPUT_W = 384  # pixels, model input width
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, on [0, 1] values
IMAGENET_STD = (0.229, 0.224, 0.225)  # RGB

# --- maps out --------------------------------------------------------------
BLUR_KSIZE = 11  # pixels, Gaussian kernel side; sigma derived as OpenCV does (2.0)

# --- audio (AViNet) --------------------------------------------------------
AUDIO_RATE = 22_050  # Hz, SoundNet's input rate
AUDIO_SCALE = 256.0  # SoundNet input range is [-256, 256] (16-bit PCM v -> v * 2**-7)
AUDIO_BUFFER = 70_560  # samples: AUDIO_RATE / 10 fps * CLIP_LEN

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

WARMUP_POLICIES = ("mirror", "reference")
FORMATS = ("png", "h5", "mp4")
H5_DTYPES = ("float16", "float32")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FUSIONS = ("bilinear", "transformer", "concat")

# --- weights ----------------------------------------------------------------
DEFAULT_WEIGHTS = {
    "vinet": "ViNet_DHF1K.pt",
    "bilinear": "AViNet_bilinear.pt",
    "transformer": "AViNet_transformer.pt",
    "concat": "AViNet_concat.pt",
    "soundnet": "soundnet8_final.pth",
}
WEIGHTS_ENV = "SALCLI_WEIGHTS"  # a folder searched for weights (and the cache)
