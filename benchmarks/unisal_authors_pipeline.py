"""A re-enactment of the authors' UNISAL video procedure (their folder demo, ``run.py
predict_examples`` -> ``generate_predictions_from_path`` -> ``run_inference``), for the
parity test and the benchmark.

Written from the facts in ``shared/docs/unisal.conventions.md`` (not from their code):

1. the video is extracted to lossless PNG files, one per frame, in ``FOLDER/images/``
   (the published datasets' frames are PNG files);
2. the files are sorted by name; each is read with OpenCV, reversed to RGB, resized with
   Pillow's LANCZOS to the input size (chosen from the **first** frame's size and the
   domain), turned into a tensor (/ 255) and normalized with the ImageNet mean and std;
3. for each offset o = 0 ... P-1 (P = the domain's frame stride: DHF1K 5, Hollywood and
   UCF Sports 4), frames o, o+P, o+2P, ... form a sequence, whose state starts at zero;
   it is fed in chunks of 6 frames, the state of one chunk passed into the next, and
   within a chunk the frames go through the network one by one (batch 1, fp32);
4. each frame's output is resized in the model (bilinear) to the frame's size and turned
   into log-probabilities; the saved map is exp / max, x 255, truncated to 8 bits, written
   under the frame's own name.

``predict_folder`` also returns the float maps (exp / max) before the 8-bit step, for
comparisons that leave the file format out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from salcli.media.decode import open_video
from salcli.models.unisal import log_probabilities
from salcli.models.vinet_procedure import IMAGENET_MEAN, IMAGENET_STD

CHUNK = 6  # frames per forward call of their prediction run (seq_len 12 x 0.5)
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")  # lowercase only, as theirs
FRAME_STRIDE = {"DHF1K": 5, "Hollywood": 4, "UCFSports": 4}  # their frame_modulo
FIXED_INPUT = {"Hollywood": (224, 416), "UCFSports": (256, 384)}


@dataclass
class AuthorsRun:
    maps: np.ndarray  # (N, H, W) float32, exp / max
    maps_u8: np.ndarray  # (N, H, W) uint8, as saved
    extract_s: float = 0.0  # seconds: video -> PNG files
    predict_s: float = 0.0  # seconds: PNG files -> map files


def extract_frames(video: str | Path, folder: str | Path) -> list[Path]:
    """Every frame of ``video`` as ``folder/images/NNNN.png`` (1-based, lossless)."""
    images = Path(folder) / "images"
    images.mkdir(parents=True, exist_ok=True)
    paths = []
    with open_video(video) as reader:
        for frame in reader:
            path = images / f"{frame.index + 1:04d}.png"
            if not cv2.imwrite(str(path), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)):
                raise OSError(f"could not write {path}")
            paths.append(path)
    return paths


def their_input_size(height: int, width: int, domain: str) -> tuple[int, int]:
    """Their folder rule, written out again: DHF1K's 360x640 -> 224x384, Hollywood and
    UCFSports fixed, else get_optimal_out_size over n1, n2 in 7 ... 13, 100 <= n1 n2 <= 120."""
    if domain == "DHF1K" and (height, width) == (360, 640):
        return 224, 384
    if domain in FIXED_INPUT:
        return FIXED_INPUT[domain]
    ratio = height / width
    pairs = [(a, b) for a in range(7, 14) for b in range(7, 14) if 100 <= a * b <= 120]
    scores = [min(a / b, ratio) / max(a / b, ratio) for a, b in pairs]
    a, b = pairs[int(np.argmax(scores))]  # the first maximum
    return 32 * a, 32 * b


def load_frame(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """(3, h, w): cv2.imread, BGR -> RGB, PIL LANCZOS resize, ToTensor, Normalize."""
    from PIL import Image

    rgb = cv2.imread(str(path))[:, :, ::-1]
    img = Image.fromarray(np.ascontiguousarray(rgb)).resize((size[1], size[0]), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        3, 1, 1
    )


def predict_folder(
    model: nn.Module, folder: str | Path, out_dir: str | Path | None = None,
    *, domain: str = "DHF1K",
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(float maps, 8-bit maps), each (N, H, W), of ``folder/images`` the authors' way."""
    files = sorted(
        (p for p in (Path(folder) / "images").iterdir() if p.suffix in FRAME_SUFFIXES),
        key=lambda p: p.name,  # as strings
    )
    n = len(files)
    first = cv2.imread(str(files[0]))
    frame_size = first.shape[:2]  # the first frame's: every output's target size
    size = their_input_size(*frame_size, domain)
    model = model.eval().set_domain(domain)
    stride = FRAME_STRIDE[domain]
    maps: list[np.ndarray | None] = [None] * n
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for offset in range(min(stride, n)):
        sequence = list(range(offset, n, stride))
        h = None  # their h0 = [None]: zeros at the first step
        for lo in range(0, len(sequence), CHUNK):
            for t in sequence[lo : lo + CHUNK]:  # frame by frame within the chunk
                x = load_frame(files[t], size)[None]
                if h is None:
                    h = model.zero_states(1, size, x)
                with torch.no_grad():
                    logits, h = model(x, h, [0])
                    logp = log_probabilities(logits, frame_size)[0]
                m = torch.exp(logp)
                maps[t] = (m / m.max()).numpy()
    floats = np.stack(maps)
    u8 = (floats * 255).astype(np.uint8)  # truncation, as their cast
    if out is not None:
        for f, m in zip(files, u8, strict=True):
            cv2.imwrite(str(out / f.name), m)
    return floats, u8


def run(model: nn.Module, video: str | Path, workdir: str | Path, *, domain: str = "DHF1K"):
    """Extract ``video`` to PNG frames under ``workdir``, then predict them; timed apart."""
    workdir = Path(workdir)
    started = time.perf_counter()
    extract_frames(video, workdir / "frames")
    extracted = time.perf_counter()
    floats, u8 = predict_folder(model, workdir / "frames", workdir / "maps", domain=domain)
    done = time.perf_counter()
    return AuthorsRun(floats, u8, extract_s=extracted - started, predict_s=done - extracted)
