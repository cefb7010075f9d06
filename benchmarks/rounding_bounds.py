"""How far fp32 results can fall from the exact ones on any CPU: the bounds of the parity tests.

    .venv/bin/python benchmarks/rounding_bounds.py [--samples 3] [--cases ...] [--measure]

Per comparison of the parity tests, the envelope E of ``salcli.testing.rounding_envelope``
(the fp32 rounding model, run in fp64: the same figure on every machine; its docstring
says why a sequential fp32 sum bounds every kernel's). Two fp32 results (another CPU,
BatchNorm folded or not, overlap reuse or not) each lie within E of the exact output, so
they differ by at most 2E; salcli against the authors' fp32 outputs by at most E plus
the authors' own error, printed beside it.

``--measure`` also runs the fp32 model here with oneDNN capped at every instruction set
this CPU has, with 1 and 2 threads (subprocesses: ``ONEDNN_MAX_CPU_ISA`` and
``OMP_NUM_THREADS`` act at start-up), to show where real kernels fall inside E. Prints
figures; asserts nothing. The constants of ``tests/helpers.py`` come from its output.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
ISA_LEVELS = ("SSE41", "AVX", "AVX2", "AVX512_CORE", "AVX512_CORE_BF16", "AVX512_CORE_AMX")


# --- the comparisons ---------------------------------------------------------------------


def _stavis(audiovisual: bool):
    from salcli.models.stavis import AUDIO_BUFFER, CLIP_LEN, Stavis
    from salcli.testing import load_manifest, relative_error, stavis_snapshot

    name = "audiovisual" if audiovisual else "visual"
    snap = stavis_snapshot(load_manifest(DATA / f"stavis_{name}.keys.json"))
    sd = {k.removeprefix("module."): v for k, v in snap["state_dict"].items()}
    model = Stavis(audiovisual=audiovisual).eval()
    model.load_state_dict(sd, strict=True)
    clip = np.random.default_rng(20200615).standard_normal((1, 3, CLIP_LEN, 112, 112))
    audio = 0.1 * np.random.default_rng(20200616).standard_normal((1, 1, 1, AUDIO_BUFFER))
    inputs = (torch.from_numpy(clip), torch.from_numpy(audio))
    expected = np.load(DATA / f"stavis_{name}.expected.npy")
    return model, (lambda m, c, a: m.logits(c, a)), inputs, expected, relative_error, None


def _vinet(arch: str):
    from salcli.models.registry import build_model
    from salcli.testing import (
        absolute_error,
        deterministic_state_dict,
        load_manifest,
        reference_inputs,
    )

    name = "vinet" if arch == "vinet" else f"avinet_{arch}"
    model = build_model(arch).eval()
    model.load_state_dict(deterministic_state_dict(load_manifest(DATA / f"{name}.keys.json")))
    clip, audio = reference_inputs()
    inputs = (torch.from_numpy(clip).double(), torch.from_numpy(audio).double())

    def run(m, c, a):
        return m(c) if arch == "vinet" else m(c, a)

    expected = np.load(DATA / f"{name}.expected.npy")
    return model, run, inputs, expected, absolute_error, None


def _vinet_windows():
    """The overlap tests' model and clips: ViNet with drawn BatchNorms, 3 clips at 64x96."""
    from salcli.inference.overlap import forward_windows
    from salcli.models.vinet import ViNet
    from salcli.testing import absolute_error, randomize_norms

    torch.manual_seed(0)
    model = randomize_norms(ViNet())
    frames = torch.randn(1, 3, 3 + 31, 64, 96, generator=torch.Generator().manual_seed(3))
    clips = torch.cat([frames[:, :, j : j + 32] for j in range(3)])  # (3, 3, 32, 64, 96)

    def run(m, c, f):
        return m(c)

    def windows(m, c, f):
        return forward_windows(m, f, 32)

    return model, run, (clips.double(), frames.double()), None, absolute_error, windows


def _vinet_a():
    """ViNet-A's golden comparison: the filled checkpoint, the reference clip, its logits."""
    from salcli.models.vinet_a import ViNetA
    from salcli.testing import deterministic_state_dict, load_manifest, relative_error

    model = ViNetA().eval()
    model.load_state_dict(deterministic_state_dict(load_manifest(DATA / "vinet_a.keys.json")))
    clip = np.random.default_rng(20250407).standard_normal((1, 3, 32, 256, 456))
    expected = np.load(DATA / "vinet_a.expected.npy")

    def run(m, c):
        return m.logits(c)

    return model, run, (torch.from_numpy(clip.astype(np.float32)),), expected, relative_error, None


CASES = {
    "stavis-visual": lambda: _stavis(False),
    "stavis-audiovisual": lambda: _stavis(True),
    "vinet": lambda: _vinet("vinet"),
    "avinet-bilinear": lambda: _vinet("bilinear"),
    "vinet-windows": _vinet_windows,
    "vinet-a": _vinet_a,
}


def _folded(model):
    from salcli.models.stavis import Stavis
    from salcli.models.stavis import fold_batchnorm as fold_stavis
    from salcli.models.vinet import fold_batchnorm as fold_vinet
    from salcli.models.vinet_a import ViNetA
    from salcli.models.vinet_a import fold_batchnorm as fold_vinet_a

    if isinstance(model, ViNetA):
        return fold_vinet_a(copy.deepcopy(model))
    return (fold_stavis if isinstance(model, Stavis) else fold_vinet)(copy.deepcopy(model))


def _run(model, run, inputs, dtype) -> np.ndarray:
    with torch.inference_mode():
        m = copy.deepcopy(model).to(dtype)
        return run(m, *(x.to(dtype) for x in inputs)).float().numpy()


def envelope(case: str, samples: int) -> dict:
    """The noise-model envelope of a case, and the authors' own error against exact."""
    from salcli.testing import rounding_envelope

    model, run, inputs, expected, measure, _ = CASES[case]()
    m = copy.deepcopy(model).double()
    args = tuple(x.double() for x in inputs)
    exact, bound, sampled = rounding_envelope(lambda: run(m, *args), measure, samples)
    return {
        "case": case,
        "measure": measure.__name__,
        "sampled": sampled,
        "envelope": bound,
        "authors_vs_exact": None if expected is None else measure(expected, exact),
    }


def measure_here(case: str) -> dict:
    """This process' fp32 errors against the exact output: the model as loaded, folded,
    and (overlap reuse) its windows; against the authors' outputs where there are some."""
    model, run, inputs, expected, measure, windows = CASES[case]()
    exact = _run(model, run, inputs, torch.float64)
    loaded = _run(model, run, inputs, torch.float32)
    folded = _run(_folded(model), run, inputs, torch.float32)
    out = {
        "loaded_vs_exact": measure(loaded, exact),
        "folded_vs_exact": measure(folded, exact),
        "folded_vs_loaded": measure(folded, loaded),
    }
    if windows is not None:
        shared = _run(model, windows, inputs, torch.float32)
        out |= {
            "windows_vs_exact": measure(shared, exact),
            "windows_vs_loaded": measure(shared, loaded),
        }
    if expected is not None:
        out |= {"loaded_vs_authors": measure(loaded, expected),
                "folded_vs_authors": measure(folded, expected)}  # fmt: skip
    return out


def _cpu_levels() -> list[str]:
    """The ONEDNN_MAX_CPU_ISA levels this CPU runs (oneDNN falls back above them)."""
    flags = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    need = {
        "SSE41": {"sse4_1"},
        "AVX": {"avx"},
        "AVX2": {"avx2"},
        "AVX512_CORE": {"avx512f", "avx512bw", "avx512vl"},
        "AVX512_CORE_BF16": {"avx512_bf16"},
        "AVX512_CORE_AMX": {"amx_bf16"},
    }
    return [level for level in ISA_LEVELS if need[level] <= flags]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=3, help="noise-model runs per case")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated")
    ap.add_argument("--measure", action="store_true", help="also run fp32 per ISA and threads")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # one measurement, JSON on stdout
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        print(json.dumps(measure_here(args.child)))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_predict import machine

    print(f"machine: {machine()}")
    torch.set_num_threads(2)
    for case in args.cases.split(","):
        env = envelope(case, args.samples)
        authors = env["authors_vs_exact"]
        print(
            f"{case}: {env['measure']}; noise-model samples "
            + ", ".join(f"{s:.2e}" for s in env["sampled"])
            + f" -> envelope E = {env['envelope']:.2e}"
            + ("" if authors is None else f"; authors' fp32 vs exact {authors:.2e}")
        )
        if not args.measure:
            continue
        for level in _cpu_levels():
            for threads in (1, 2):
                environ = {**os.environ, "ONEDNN_MAX_CPU_ISA": level,
                           "OMP_NUM_THREADS": str(threads)}  # fmt: skip
                out = subprocess.run(
                    [sys.executable, __file__, "--child", case],
                    env=environ, capture_output=True, text=True, check=True,
                )  # fmt: skip
                got = json.loads(out.stdout)
                print(
                    f"  {level:17s} {threads} thread{'s' if threads > 1 else ' '}: "
                    + ", ".join(f"{k} {v:.2e}" for k, v in got.items())
                )


if __name__ == "__main__":
    main()
