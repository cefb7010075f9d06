"""STAViS (Tsiami, Koutras, Maragos, CVPR 2020): the network and its published checkpoints.

The module tree, and so every ``state_dict`` key, shape and their order, is that of the
published files (``visual_split{1,2,3}_save_60.pth``, ``audiovisual_split{1,2,3}_save_60.pth``)
once their ``module.`` prefix is removed: both load strictly into ``Stavis``. The procedure
around the network (frames in, clips, audio excerpts, maps out) is in
``salcli.models.stavis_procedure``.

Shapes for one clip (B, 3, 16, 112, 112), values 0-255 minus the ActivityNet mean::

    conv1, bn1, relu        (B, 64, 16, 56, 56)   -> saliency module 0, attention
    max-pool                (B, 64, 8, 28, 28)
    layer1 (3 bottlenecks)  (B, 256, 8, 28, 28)   -> saliency module 1, attention
    layer2 (4 bottlenecks)  (B, 512, 4, 14, 14)   -> saliency module 2, attention
                                                     (and, before it, the audio-visual fusion)
    layer3 (6 bottlenecks)  (B, 1024, 2, 7, 7)    -> saliency module 3 (its attention unused)
    4 side maps (B, 16, 112, 112) each, concatenated -> fuse 1x1 (64 -> 1)           visual
    ... and the fusion's (B, 64, 112, 112)           -> fuseav 1x1 (128 -> 1)  audio-visual

    audio (B, 1, 1, 35280), time last -> SoundNet-8 -> (B, 1024, 1, 1)

Precision: the 3-D ResNet trunk runs in the run's precision (fp32, or half under
autocast); what follows it is computed so that its own rounding stays far below the
trunk's. Its sums cancel (side maps of +-60 fused into logits near 0), and in plain fp32
they were most of the model's rounding error. So the side convolutions add fp32 partial
sums of ``SUM_CHUNK`` input channels in ``PRECISE_DTYPE`` (float64; float32 on MPS, which
has none), and the attention logits, SoundNet-8, the fusion and the last 1x1 convolution
run in it (about 0.2 % of the work); the transposed convolutions, whose sums are short,
stay in fp32. ``nn.Bilinear``, which has no autocast rule, gets one dtype.

What the family declaration needs (issue 14), from the published test procedure
-------------------------------------------------------------------------------
- **Model**: ``Stavis(audiovisual=...)``; both published files have the same keys, so the
  checkpoint cannot say which head it was trained for: the user's ``--audio`` chooses
  (``audiovisual=True`` with ``audiovisual_split*``, ``False`` with ``visual_split*``).
  Recognise a checkpoint with ``detect(state_dict)``, unwrap their training snapshot
  with ``unwrap_checkpoint`` (``arch == 'resnet-50'`` checked, ``module.`` removed);
  ``salcli.models.registry.load_checkpoint`` reads and loads it. Fold BatchNorm for
  inference with ``stavis.fold_batchnorm`` (``salcli.models.vinet.fold_batchnorm`` does not know
  these blocks).
- **Clip**: ``CLIP_LEN`` = 16 frames at ``INPUT_SIZE`` = 112 x 112 (aspect not kept),
  layout (B, 3, 16, 112, 112), RGB. The map of a clip belongs to the frame at position
  ``TARGET_INDEX`` = 8 of the clip: frame f is predicted from frames f-8 ... f+7, so the
  model looks ``LOOK_AHEAD`` = 7 frames ahead (a streaming pipeline must read 7 frames
  past the one it maps; ViNet is causal). Frames past the end are loop-padded as theirs,
  frames 0-7 by a warm-up policy ("mirror", default, or "reference"): see
  ``stavis_procedure.clip_plan``.
- **Frame transform**: ``stavis_procedure.frame_to_tensor`` (Pillow-exact nearest to
  320 x 240, then Pillow bilinear to 112 x 112, values 0-255 minus ``ACTIVITYNET_MEAN``
  (114.7748, 107.7354, 99.4750), no std).
- **Audio**: mono 22 050 Hz scaled x256 (``salcli.media.audio.AudioTrack``, as AViNet); the
  excerpt of the padded clip, Hann-windowed, centred in ``AUDIO_BUFFER`` = 35 280
  samples; layout (B, 1, 1, 35280), time last: ``stavis_procedure.clip_audio`` /
  ``audio_batch``. The visual-only model needs no audio (``audio=None``).
- **Output**: ``forward`` gives the sigmoid map (B, 112, 112) in fp32. Post-processing:
  ``stavis_procedure.postprocess`` (min-max, 13 x 13 Gaussian sigma 2 with symmetric
  borders at 112 x 112, then MATLAB's bicubic ``imresize`` to the frame, rescaled to
  [0, 1]); not ViNet's order (resize, then blur).
- **Weights**: declared with the family in ``salcli.models.registry`` (one model per
  split: the test set of split k with the split-k file).

The module holds the whole network (trunk, saliency modules, fusion, the precise heads)
and its checkpoint format, over 500 lines, so that it reads as the paper's figure does:
split, one block's shapes would be in another file than the next one's.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from salcli.errors import WeightsError
from salcli.models.layers import fold_conv_bn
from salcli.models.soundnet import SoundNet8

# --- configuration of the published test scripts --------------------------------------
CLIP_LEN = 16  # frames per clip
INPUT_SIZE = 112  # pixels, model input height and width (sample_size)
TARGET_INDEX = CLIP_LEN // 2  # 8: position in its clip of the frame a map belongs to
LOOK_AHEAD = CLIP_LEN - 1 - TARGET_INDEX  # 7 frames after the mapped one
ACTIVITYNET_MEAN = (114.7748, 107.7354, 99.4750)  # RGB, on 0-255 values; no std
MAX_AUDIO_RATE = 22_050  # Hz the audio buffer is sized for
MIN_FPS = 10  # frames/s the audio buffer is sized for
AUDIO_BUFFER = int(MAX_AUDIO_RATE / MIN_FPS * CLIP_LEN)  # 35 280 samples
ARCH = "resnet-50"  # the snapshot's 'arch' entry, checked as their code does

# --- network -----------------------------------------------------------------------------
STEM_CH = 64  # channels of conv1
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2))  # (bottleneck width, blocks, stride) layer1-3
EXPANSION = 4  # bottleneck output channels / width
SIDE_CH = 16  # channels of each saliency module's side map
FUSION_HIDDEN = 128  # channels of the fusion's two affine maps
FUSION_OUT = 64  # channels of the bilinear fusion's output
FUSION_UPSCALE = 8  # layer2's resolution x 8 = the input's
AUDIO_FEATURES = 1024  # SoundNet-8 conv7 channels
# On the reference checkpoint, plain fp32 after the trunk moved the visual logits by up to
# 1.2e-4 (relative): salcli's fp32 error against the exact (float64) logits went from
# 1.48e-4 to 3.0e-5 with the rounding below (audio-visual: 8.0e-5 to 2.6e-5), less than
# the authors' own fp32 error (3.4e-5 / 6.0e-5), on any CPU's kernels.
PRECISE_DTYPE = torch.float64
SUM_CHUNK = 32  # input channels per fp32 partial sum of a side convolution (288 products)
# SoundNet-8 with (1, k) kernels, stride (1, 2): AViNet's layers (out channels, kernel,
# padding, max-pool after), but conv7 is pooled by 2: the 35 280-sample buffer becomes
# one step long.
SOUNDNET_LAYERS = (*SoundNet8.LAYERS[:-1], (AUDIO_FEATURES, *SoundNet8.LAYERS[-1][1:3], 2))

# A key only STAViS has, and one per part that the strict load then checks in full.
_SIGNATURE_KEYS = ("score_dsn.0.side_prep.weight", "fusion3.w_a_rgb.weight", "soundnet8.0.weight")
_PREFIX = "module."


def _no_autocast(x: torch.Tensor):
    """A context in which ``x``'s device runs in full precision whatever autocast is on."""
    return torch.autocast(x.device.type, enabled=False)


def precise_dtype(device: torch.device) -> torch.dtype:
    """``PRECISE_DTYPE``, or float32 on a device without float64 (MPS)."""
    return torch.float32 if device.type == "mps" else PRECISE_DTYPE


def run_precise(module: nn.Module, *inputs: object, **kwargs: object) -> object:
    """``module(*inputs, **kwargs)`` with its weights and tensor inputs in ``precise_dtype``
    and autocast off; the module's own parameters stay as they are stored."""
    first = next(x for x in inputs if isinstance(x, torch.Tensor))
    dtype = precise_dtype(first.device)
    state = {
        name: t.to(dtype) if t.is_floating_point() else t
        for name, t in (*module.named_parameters(), *module.named_buffers())
    }
    args = tuple(x.to(dtype) if isinstance(x, torch.Tensor) else x for x in inputs)
    with _no_autocast(first):
        return torch.func.functional_call(module, state, args, kwargs)


def chunked_conv2d(x: torch.Tensor, conv: nn.Conv2d, chunk: int = SUM_CHUNK) -> torch.Tensor:
    """``conv(x)`` in ``precise_dtype``, each output the sum of partial sums over at most
    ``chunk`` input channels, each computed in ``x``'s dtype (a fast kernel) and added in
    the precise one: rounding that grows with the length of a sum (9216 products per
    output at layer3) stays that of ``chunk`` x kernel products."""
    if conv.groups != 1:
        raise ValueError("chunked_conv2d takes ungrouped convolutions")
    dtype = precise_dtype(x.device)
    w = conv.weight.to(x.dtype)
    out = None
    for c in range(0, x.shape[1], chunk):
        part = F.conv2d(x[:, c : c + chunk], w[:, c : c + chunk], None, conv.stride,
                        conv.padding, conv.dilation).to(dtype)  # fmt: skip
        out = part if out is None else out.add_(part)
    return out if conv.bias is None else out + conv.bias.to(dtype).view(1, -1, 1, 1)


def _full(x: torch.Tensor) -> torch.Tensor:
    """``x`` in fp32 if it is in half precision (fp32 and fp64 stay as they are)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def spatial_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over all positions of each (H, W) map: (B, C, H, W) -> (B, C, H, W), fp32.

    Theirs is exp(x) / sum(exp(x)) without the maximum subtracted, which overflows fp32
    above x = 88.7; this one subtracts it (``torch.softmax``), so it gives the same
    numbers (to rounding) wherever theirs is finite, and finite ones everywhere else.
    """
    with _no_autocast(logits):
        flat = _full(logits).flatten(2)  # (B, C, H*W)
        return torch.softmax(flat, dim=-1).view_as(logits)


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The centred ``size`` window of (..., H, W); an odd surplus is cut more on the
    right / bottom (as theirs: floor(d/2) before, ceil(d/2) after)."""
    h, w = x.shape[-2:]
    dh, dw = h - size[0], w - size[1]
    if dh < 0 or dw < 0:
        raise ValueError(f"cannot crop {(h, w)} to {tuple(size)}")
    return x[..., dh // 2 : dh // 2 + size[0], dw // 2 : dw // 2 + size[1]]


def attend(feature: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """feature (B, C, T, H, W) x (1 + spatial softmax of logits (B, 1, H, W)), the same
    attention for every channel and time step. The product is in the trunk's full dtype
    (fp32 for half; under autocast the next convolution casts it down): a half-precision
    1 + a would round a ~1e-4 attention away."""
    att = spatial_softmax(logits).unsqueeze(2)  # (B, 1, 1, H, W)
    with _no_autocast(feature):
        x = _full(feature)
        return x * (1.0 + att).to(x.dtype)


# ---------------------------------------------------------------------------
# 3-D ResNet-50 trunk (Hara et al.), Bottleneck blocks, shortcut B
# ---------------------------------------------------------------------------


class Bottleneck3d(nn.Module):
    """1x1x1 -> 3x3x3 (stride) -> 1x1x1 convolutions, each with BatchNorm, plus the shortcut:
    identity, or (shortcut B) a strided 1x1x1 convolution and BatchNorm where the shape
    changes."""

    def __init__(self, in_ch: int, width: int, stride: int = 1):
        super().__init__()
        out_ch = width * EXPANSION
        self.conv1 = nn.Conv3d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm3d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)

    def conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        pairs = [(self, f"conv{i}", f"bn{i}") for i in (1, 2, 3)]
        if self.downsample is not None:
            pairs.append((self.downsample, "0", "1"))
        return pairs


def _stage(in_ch: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    out_ch = width * EXPANSION
    rest = [Bottleneck3d(out_ch, width) for _ in range(blocks - 1)]
    return nn.Sequential(Bottleneck3d(in_ch, width, stride), *rest)


# ---------------------------------------------------------------------------
# Saliency modules (side outputs and spatial attention)
# ---------------------------------------------------------------------------


class SaliencyModule(nn.Module):
    """One side branch, at level ``level`` = 1 ... 4 (conv1, layer1, layer2, layer3).

    The feature is averaged over time, a 3x3 convolution makes 16 channels; a learned
    transposed convolution (kernel 2^(level+1), stride 2^level), centre-cropped to the
    input size, makes the side map; a 1x1 convolution makes the attention logits at the
    feature's own resolution. ``upscale_`` (the upsampled 1-channel side output of their
    deep supervision) is loaded but not needed to predict.
    """

    def __init__(self, level: int, in_ch: int):
        super().__init__()
        kernel, stride = 2 ** (level + 1), 2**level
        # registration order = the published key order
        self.side_prep = nn.Conv2d(in_ch, SIDE_CH, 3, padding=1)
        self.score_dsn = nn.Conv2d(SIDE_CH, 1, 1)
        self.upscale_ = nn.ConvTranspose2d(1, 1, kernel, stride=stride, bias=False)
        self.upscale = nn.ConvTranspose2d(SIDE_CH, SIDE_CH, kernel, stride=stride, bias=False)

    def forward(
        self, pooled: torch.Tensor, size: tuple[int, int], *, attention: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """pooled (B, C, h, w), the feature averaged over time (``time_mean``) -> side map
        (B, 16, *size) and attention logits (B, 1, h, w) (None with ``attention=False``),
        in ``precise_dtype`` (the side convolution by ``chunked_conv2d``, the transposed
        one, whose sums are short, in the weights' dtype)."""
        with _no_autocast(pooled):
            prep = chunked_conv2d(pooled, self.side_prep)  # (B, 16, h, w)
            up = self.upscale(prep.to(self.upscale.weight.dtype))
            side = center_crop(up, size).to(prep.dtype)  # (B, 16, H, W)
            logits = None
            if attention:  # (B, 1, h, w)
                w, b = (t.to(prep.dtype) for t in (self.score_dsn.weight, self.score_dsn.bias))
                logits = F.conv2d(prep, w, b)
        return side, logits


def time_mean(feature: torch.Tensor) -> torch.Tensor:
    """A trunk feature (B, C, T, h, w) averaged over time: (B, C, h, w), in fp32 for half
    precision (the saliency modules then take it to ``precise_dtype``: a copy of the
    averaged feature, not of the whole clip's)."""
    with _no_autocast(feature):
        return _full(feature).mean(dim=2)


# ---------------------------------------------------------------------------
# Audio: SoundNet-8 with time on the last axis, and the audio-visual fusion
# ---------------------------------------------------------------------------


def soundnet8() -> nn.Sequential:
    """SoundNet-8 as their flat ``nn.Sequential`` (conv, BatchNorm, ReLU[, max-pool]) x 7:
    (B, 1, 1, N) -> (B, 1024, 1, N'); N' = 1 for the 35 280-sample buffer."""
    layers: list[nn.Module] = []
    in_ch = 1
    for out_ch, kernel, pad, pool in SOUNDNET_LAYERS:
        layers += [
            nn.Conv2d(in_ch, out_ch, (1, kernel), stride=(1, 2), padding=(0, pad)),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        ]
        if pool > 1:
            layers.append(nn.MaxPool2d((1, pool), stride=(1, pool)))
        in_ch = out_ch
    return nn.Sequential(*layers)


class AudioVisualFusion(nn.Module):
    """layer2's feature and the audio vector -> (B, 64, H, W) fusion channels.

    The two middle time steps of the feature are averaged; each position (row-major)
    goes through a linear map 512 -> 128 and a ReLU, the audio through 1024 -> 128 and a
    ReLU; a bilinear layer (visual first, audio second) makes 64 values per position,
    upsampled x8 (bilinear, corners not aligned) and centre-cropped to the input size.
    """

    def __init__(self, visual_ch: int = 512, audio_ch: int = AUDIO_FEATURES):
        super().__init__()
        self.affine_rgb = nn.Linear(visual_ch, FUSION_HIDDEN)
        self.affine_audio = nn.Linear(audio_ch, FUSION_HIDDEN)
        self.w_a_rgb = nn.Bilinear(FUSION_HIDDEN, FUSION_HIDDEN, FUSION_OUT)

    def forward(
        self, feature: torch.Tensor, audio: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """feature (B, 512, T, h, w), T >= 2; audio (B, 1024) -> (B, 64, *size), in the
        dtype of the weights (``run_precise`` runs it in ``precise_dtype``)."""
        t = feature.shape[2]
        if t < 2:
            raise ValueError(f"the fusion needs at least 2 time steps in layer2, got {t}")
        mid = feature[:, :, t // 2 - 1 : t // 2 + 1].mean(dim=2)  # (B, 512, h, w)
        b, _, h, w = mid.shape
        visual = F.relu(self.affine_rgb(mid.flatten(2).transpose(1, 2)))  # (B, h*w, 128)
        sound = F.relu(self.affine_audio(audio))  # (B, 128)
        # the bilinear layer, out_k = sum_ij visual_i W_kij sound_j + b_k, with the sum over
        # the sound (the same at every position) taken once per clip: 1/(h*w) of the work
        per_clip = torch.einsum("kij,bj->bki", self.w_a_rgb.weight, sound)  # (B, 64, 128)
        bias = self.w_a_rgb.bias.view(1, 1, -1)
        fused = torch.baddbmm(bias, visual, per_clip.transpose(1, 2))  # (B, h*w, 64)
        fused = fused.transpose(1, 2).reshape(b, FUSION_OUT, h, w)  # (B, 64, h, w)
        up = F.interpolate(
            fused, size=(h * FUSION_UPSCALE, w * FUSION_UPSCALE), mode="bilinear"
        )  # align_corners=False
        return center_crop(up, size)  # (B, 64, H, W)


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


class Stavis(nn.Module):
    """STAViS: the visual-only (``audiovisual=False``) or the audio-visual model.

    Both variants build every layer (their visual-only model does too, so both published
    files have the same keys); the visual-only one skips SoundNet-8 and the fusion at run
    time, since its output does not depend on them, and needs no audio.
    """

    arch = "stavis"

    def __init__(self, audiovisual: bool = True):
        super().__init__()
        self.audiovisual = bool(audiovisual)
        # registration order = the published key order
        # 7x7x7, stride 1 in time and 2 in space: (B, 3, T, H, W) -> (B, 64, T, H/2, W/2)
        self.conv1 = nn.Conv3d(3, STEM_CH, 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(STEM_CH)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        in_ch = STEM_CH
        for i, (width, blocks, stride) in enumerate(STAGES, start=1):
            self.add_module(f"layer{i}", _stage(in_ch, width, blocks, stride))
            in_ch = width * EXPANSION
        side_in = (STEM_CH, *(width * EXPANSION for width, _, _ in STAGES))  # 64 256 512 1024
        self.score_dsn = nn.ModuleList(
            SaliencyModule(level, ch) for level, ch in enumerate(side_in, start=1)
        )
        sides = SIDE_CH * len(side_in)  # 64
        self.fuse = nn.Conv2d(sides, 1, 1)
        self.fuseav = nn.Conv2d(sides + FUSION_OUT, 1, 1)
        self.soundnet8 = soundnet8()
        self.fusion3 = AudioVisualFusion(side_in[2], AUDIO_FEATURES)

    def sound(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (B, 1, 1, N), time last -> (B, 1024), computed in ``precise_dtype``."""
        if audio.dim() != 4 or tuple(audio.shape[1:3]) != (1, 1):
            raise ValueError(f"audio must be (B, 1, 1, N), got {tuple(audio.shape)}")
        x = run_precise(self.soundnet8, audio)  # (B, 1024, 1, N')
        if tuple(x.shape[2:]) != (1, 1):
            raise ValueError(
                f"{audio.shape[-1]} audio samples make SoundNet-8 features of length "
                f"{x.shape[-1]}, the fusion needs 1 (the published buffer is {AUDIO_BUFFER})"
            )
        return x.flatten(1)  # (B, 1024)

    def _run(
        self, clip: torch.Tensor, audio: torch.Tensor | None, record: dict | None
    ) -> torch.Tensor:
        if clip.dim() != 5 or clip.shape[1] != 3:
            raise ValueError(f"clip must be (B, 3, T, H, W), got {tuple(clip.shape)}")
        if self.audiovisual and audio is None:
            raise ValueError("the audio-visual model needs audio (B, 1, 1, 35280)")
        keep = record if record is not None else {}
        size = (int(clip.shape[-2]), int(clip.shape[-1]))
        sides: list[torch.Tensor] = []  # four (B, 16, H, W)
        att: list[torch.Tensor] = []  # three (B, 1, h, w)

        def side_and_attention(level: int, feature: torch.Tensor) -> torch.Tensor:
            keep[f"feature{level}"] = feature
            side, logits = self.score_dsn[level](time_mean(feature), size)
            sides.append(side)
            att.append(logits)
            return attend(feature, logits)

        x = self.relu(self.bn1(self.conv1(clip)))  # (B, 64, T, H/2, W/2)
        x = side_and_attention(0, x)  # before the max-pool
        x = self.layer1(self.maxpool(x))  # (B, 256, T/2, H/4, W/4)
        x = side_and_attention(1, x)
        x = self.layer2(x)  # (B, 512, T/4, H/8, W/8)
        if self.audiovisual:  # on layer2's output before its attention
            fusion = run_precise(self.fusion3, x, self.sound(audio), size)  # (B, 64, H, W)
            keep["fusion"] = fusion
        x = side_and_attention(2, x)
        x = self.layer3(x)  # (B, 1024, T/8, H/16, W/16)
        keep["feature3"] = x
        sides.append(self.score_dsn[3](time_mean(x), size, attention=False)[0])  # attention unused
        keep["attention_logits"], keep["sides"] = att, sides
        if self.audiovisual:
            out = run_precise(self.fuseav, torch.cat((*sides, fusion), dim=1))
        else:
            out = run_precise(self.fuse, torch.cat(sides, dim=1))
        out = out.to(_full(clip).dtype)  # fp32 (fp64 for a model run in fp64)
        keep["logits"] = out
        return out  # (B, 1, H, W)

    def logits(self, clip: torch.Tensor, audio: torch.Tensor | None = None) -> torch.Tensor:
        """clip (B, 3, T, H, W), audio (B, 1, 1, 35280) or None (visual-only) -> the fused
        logits (B, 1, H, W), fp32 (fp64 for a model run so): the last entry of their
        ``{'sal': [...]}``."""
        return self._run(clip, audio, None)

    def intermediates(
        self, clip: torch.Tensor, audio: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """The tensors of one forward pass, for inspection: ``feature0`` ... ``feature3``
        (conv1 and layer1-3 outputs, before their attention), ``attention_logits`` (three
        (B, 1, h, w)), ``sides`` (four (B, 16, H, W)), ``fusion`` (audio-visual only) and
        ``logits``."""
        record: dict = {}
        self._run(clip, audio, record)
        return record

    def forward(self, clip: torch.Tensor, audio: torch.Tensor | None = None) -> torch.Tensor:
        """clip (B, 3, T, H, W), audio (B, 1, 1, 35280) or None -> saliency (B, H, W) in
        (0, 1), fp32 (the sigmoid their test applies)."""
        z = self.logits(clip, audio)
        with _no_autocast(z):
            return torch.sigmoid(_full(z))[:, 0]

    def conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        """(parent, convolution name, BatchNorm name) of every BatchNorm that follows a
        convolution: the stem, the bottlenecks, SoundNet-8."""
        pairs: list[tuple[nn.Module, str, str]] = [(self, "conv1", "bn1")]
        for mod in self.modules():
            if isinstance(mod, Bottleneck3d):
                pairs += mod.conv_bn_pairs()
        for i, mod in enumerate(self.soundnet8):
            if isinstance(mod, nn.Conv2d):
                pairs.append((self.soundnet8, str(i), str(i + 1)))
        return pairs


# ---------------------------------------------------------------------------
# Inference-only rewrite
# ---------------------------------------------------------------------------


def fold_batchnorm(model: Stavis) -> Stavis:
    """Fold every BatchNorm of ``model`` into the convolution before it, in place, for
    inference (eval mode): the same outputs up to float rounding, one pass over each
    trunk activation less. The state_dict then no longer has the published keys.
    Folding twice changes nothing."""
    for parent, conv, norm in model.conv_bn_pairs():
        if fold_conv_bn(getattr(parent, conv), getattr(parent, norm)):
            setattr(parent, norm, nn.Identity())
    return model


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


def _strip(sd: Mapping[str, object]) -> dict:
    if sd and all(isinstance(k, str) and k.startswith(_PREFIX) for k in sd):
        return {k[len(_PREFIX) :]: v for k, v in sd.items()}
    return dict(sd)


def detect(obj: Mapping) -> str | None:
    """``"stavis"`` when ``obj`` (a state_dict, with or without ``module.``, or their
    training snapshot) has STAViS's keys, else None (e.g. ViNet's, AViNet's). Both
    variants have the same keys: which head to run is the caller's choice."""
    if not isinstance(obj, Mapping):
        return None
    inner = obj.get("state_dict", obj)
    if not isinstance(inner, Mapping):
        return None
    keys = set(_strip(inner))
    return "stavis" if all(k in keys for k in _SIGNATURE_KEYS) else None


def unwrap_checkpoint(obj: object) -> dict[str, torch.Tensor]:
    """The state_dict (``module.`` removed) of a published STAViS file.

    Accepts their training snapshot (``epoch``, ``arch``, ``state_dict``, four optimizer
    states; ``arch`` must be 'resnet-50', as their loader asserts; the optimizer states are
    ignored) or a bare state_dict. Raises ``WeightsError`` for anything else."""
    sd = obj
    if isinstance(obj, Mapping) and "state_dict" in obj:
        arch = obj.get("arch", ARCH)
        if arch != ARCH:
            raise WeightsError(f"not a STAViS snapshot: arch is {arch!r}, expected {ARCH!r}")
        sd = obj["state_dict"]
    if not isinstance(sd, Mapping) or not sd:
        raise WeightsError("the file holds no state_dict")
    sd = _strip(sd)
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError("the state_dict holds entries that are not tensors")
    if detect(sd) is None:
        raise WeightsError("the checkpoint is not STAViS (unknown keys)")
    return sd


__all__ = [
    "ACTIVITYNET_MEAN",
    "AUDIO_BUFFER",
    "CLIP_LEN",
    "INPUT_SIZE",
    "LOOK_AHEAD",
    "TARGET_INDEX",
    "AudioVisualFusion",
    "Bottleneck3d",
    "SaliencyModule",
    "Stavis",
    "attend",
    "center_crop",
    "fold_batchnorm",
    "detect",
    "soundnet8",
    "spatial_softmax",
    "unwrap_checkpoint",
]
