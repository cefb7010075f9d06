"""The registry of known checkpoints, `--weights` resolution, import (with its safety
checks) and verify, through the API and through `salcli weights`."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import stat
from pathlib import Path

import pytest
import torch
import typer
from helpers import REPO_ROOT, sub_app
from typer.testing import CliRunner

from salcli.cli import app as main_app
from salcli.cli import weights as cli_weights
from salcli.cli._console import flag_of
from salcli.errors import WeightsError
from salcli.inference.predictor import Predictor
from salcli.models.registry import CHECKPOINTS, build_model
from salcli.models.registry import DEFAULT_FILES as DEFAULT_WEIGHTS
from salcli.models.registry import label as model_name
from salcli.models.s3d import S3DBackbone
from salcli.models.soundnet import SoundNet8
from salcli.weights import cache as registry
from salcli.weights import store


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch) -> Path:
    """Cache in tmp_path/cache, the built-in registry only, cwd without weights/."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SALCLI_WEIGHTS", str(cache))
    monkeypatch.delenv("SALCLI_REGISTRY", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return cache


def _cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _cached_files(tmp_path: Path) -> list[str]:
    cache = _cache(tmp_path)
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def shape_only(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state_dict with the model's keys and shapes whose tensors store one value each
    (expanded views), so that even a full ViNet saves in a few kB."""
    return {
        k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in model.state_dict().items()
    }


@pytest.fixture(scope="module")
def meta_models() -> dict[str, torch.nn.Module]:
    with torch.device("meta"):
        return {a: build_model(a) for a in ("vinet", "bilinear", "soundnet")}


def _save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def _registry(tmp_path: Path, entries: list[dict]) -> Path:
    path = tmp_path / "extra_registry.json"
    path.write_text(json.dumps({"format": 1, "entries": entries}))
    return path


def _app() -> typer.Typer:
    return sub_app(cli_weights.register)


def _run(*args: str):
    return CliRunner().invoke(_app(), ["weights", *args])


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------


def test_the_declared_checkpoints_are_the_registry_and_name_the_published_files():
    reg = registry.load_registry()
    assert list(reg.values()) == list(CHECKPOINTS)  # one table: the declarations
    assert reg["vinet-dhf1k"].file == DEFAULT_WEIGHTS["vinet"]
    assert reg["vinet-dhf1k"].manual and "samyak0210/ViNet" in reg["vinet-dhf1k"].page
    assert reg["soundnet8"].file == DEFAULT_WEIGHTS["soundnet"] == "soundnet8_final.pth"
    assert (
        reg["soundnet8"].urls[0].startswith("https://raw.githubusercontent.com/samyak0210/ViNet/")
    )
    tv = reg["s3d-kinetics400-torchvision"]
    assert tv.urls == ("https://download.pytorch.org/models/s3d-d76dad2f.pth",)
    assert tv.sha256_prefix == "d76dad2f" and tv.sha256 is None and tv.checksum == "d76dad2f"
    assert reg["s3d-kinetics400"].arch == "s3d"
    for fusion in ("bilinear", "transformer"):
        names = [e.name for e in reg.values() if e.arch == fusion]
        assert f"avinet-{fusion}-diem" in names and len(names) == 6
    # no invented checksums: none of the published files has a known full digest
    assert all(e.sha256 is None for e in reg.values())
    # every entry says how to get it, what it was trained on and its licence
    assert all(e.urls or e.page for e in reg.values())
    assert all(e.trained_on and e.licence for e in reg.values())


def test_pyproject_states_the_license_as_spdx():
    """The licence is an SPDX string (the TOML table form makes setuptools >= 77 print a
    deprecation warning on every install)."""
    tomllib = pytest.importorskip("tomllib")
    doc = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert doc["project"]["license"] == "MIT"
    floors = [r for r in doc["build-system"]["requires"] if r.startswith("setuptools")]
    assert floors == ["setuptools>=77"]  # the first setuptools that accepts the string


def test_extra_registry_from_the_environment(tmp_path, monkeypatch):
    extra = _registry(
        tmp_path,
        [
            {"name": "mine", "arch": "vinet", "file": "mine.pt"},
            {"name": "soundnet8", "arch": "soundnet", "file": "soundnet8_final.pth",
             "urls": ["http://mirror.example/soundnet8_final.pth"]},
        ],
    )  # fmt: skip
    monkeypatch.setenv("SALCLI_REGISTRY", str(extra))
    reg = registry.load_registry()
    assert reg["mine"].manual and reg["mine"].urls == ()
    assert reg["soundnet8"].urls == ("http://mirror.example/soundnet8_final.pth",)
    assert "vinet-dhf1k" in reg


@pytest.mark.parametrize(
    "entries, message",
    [
        ([{"name": "a", "arch": "resnet", "file": "a.pt"}], "unknown architecture"),
        ([{"name": "a", "arch": "vinet", "file": "../a.pt"}], "plain file name"),
        ([{"name": "a", "arch": "vinet", "file": "a.pt", "sha256": "abc"}], "64 hex"),
        ([{"name": "a", "arch": "vinet", "file": "a.pt", "sha256": "xyz"}], "SHA-256"),
        ([{"name": "a", "arch": "vinet"}], "'file' is missing"),
        (
            [
                {"name": "a", "arch": "vinet", "file": "a.pt"},
                {"name": "a", "arch": "vinet", "file": "b.pt"},
            ],
            "appears twice",
        ),
        (
            [
                {"name": "a", "arch": "vinet", "file": "a.pt"},
                {"name": "b", "arch": "vinet", "file": "a.pt"},
            ],
            "share the file name",
        ),
    ],
)
def test_malformed_registry_is_one_line(tmp_path, entries, message):
    with pytest.raises(WeightsError, match=message) as err:
        registry.load_registry(_registry(tmp_path, entries))
    assert "\n" not in str(err.value)


def test_unreadable_registry(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text("{not json")
    with pytest.raises(WeightsError, match="not a readable weights registry"):
        registry.load_registry(bad)


# ---------------------------------------------------------------------------
# --weights resolution
# ---------------------------------------------------------------------------


def test_resolve_path_name_and_default(tmp_path):
    cache = _cache(tmp_path)
    cache.mkdir()
    (cache / "soundnet8_final.pth").write_bytes(b"x")
    given = tmp_path / "elsewhere" / "w.pt"
    given.parent.mkdir()
    given.write_bytes(b"w")
    assert registry.resolve_weights(given, "vinet") == given  # a Path is used as is
    with pytest.raises(WeightsError, match="weights file not found: some/dir/w.pt"):
        registry.resolve_weights("some/dir/w.pt", "vinet")  # a path is not searched for
    assert registry.resolve_weights("soundnet8", "soundnet") == cache / "soundnet8_final.pth"
    assert registry.resolve_weights(None, "soundnet").name == "soundnet8_final.pth"
    # an existing file wins over a registry name of the same spelling
    (Path.cwd() / "soundnet8").write_bytes(b"y")
    assert registry.resolve_weights("soundnet8", "soundnet") == Path("soundnet8")


def test_search_dirs_are_the_current_folder_weights_the_checkout_and_the_cache(tmp_path):
    cwd = Path.cwd()
    checkout = registry.repo_weights_dir()  # an empty stand-in (conftest)
    assert registry.search_dirs() == [cwd, cwd / "weights", checkout, _cache(tmp_path)]


def test_the_checkout_weights_folder_is_the_one_beside_the_package(monkeypatch):
    monkeypatch.undo()  # the real look-up, not conftest's stand-in
    assert registry.repo_weights_dir() == REPO_ROOT / "weights"


def test_weights_in_the_checkout_are_found_after_the_current_folder(tmp_path):
    checkout = registry.repo_weights_dir()
    checkout.mkdir()
    (checkout / "ViNet_DHF1K.pt").write_bytes(b"v")
    assert registry.resolve_weights(None, "vinet") == checkout / "ViNet_DHF1K.pt"
    (Path.cwd() / "ViNet_DHF1K.pt").write_bytes(b"w")
    assert registry.resolve_weights(None, "vinet") == Path.cwd() / "ViNet_DHF1K.pt"


@pytest.mark.parametrize("where", ["cwd", "cwd/weights", "cache"])
def test_bare_file_name_registry_name_and_default_are_looked_up_alike(tmp_path, where):
    """`--weights ViNet_DHF1K.pt`, `--weights vinet-dhf1k` and no --weights find the same
    file, in the same folders."""
    folder = {"cwd": Path.cwd(), "cwd/weights": Path.cwd() / "weights"}.get(where, _cache(tmp_path))
    folder.mkdir(exist_ok=True)
    (folder / "ViNet_DHF1K.pt").write_bytes(b"v")
    (folder / "AViNet_transformer_DIEM.pt").write_bytes(b"t")
    want = (folder / "ViNet_DHF1K.pt").resolve()
    for spec in ("ViNet_DHF1K.pt", "vinet-dhf1k", None):
        assert registry.resolve_weights(spec, "vinet").resolve() == want
    for spec in ("AViNet_transformer_DIEM.pt", "avinet-transformer-diem"):
        found = registry.resolve_weights(spec, "transformer")
        assert found.resolve() == (folder / "AViNet_transformer_DIEM.pt").resolve()


def test_lookup_order_is_the_same_for_every_kind_of_spec(tmp_path):
    local, cache = Path.cwd() / "weights", _cache(tmp_path)
    for d in (local, cache):
        d.mkdir()
        (d / "ViNet_DHF1K.pt").write_bytes(b"v")
    for spec in ("ViNet_DHF1K.pt", "vinet-dhf1k", None):
        assert registry.resolve_weights(spec, "vinet") == local / "ViNet_DHF1K.pt"
    (local / "ViNet_DHF1K.pt").unlink()
    for spec in ("ViNet_DHF1K.pt", "vinet-dhf1k", None):
        assert registry.resolve_weights(spec, "vinet") == cache / "ViNet_DHF1K.pt"


def test_default_file_is_found_without_reading_the_registry(tmp_path, monkeypatch):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    monkeypatch.setenv("SALCLI_REGISTRY", str(bad))
    (Path.cwd() / "ViNet_DHF1K.pt").write_bytes(b"v")
    assert registry.resolve_weights(None, "vinet") == Path.cwd() / "ViNet_DHF1K.pt"


def test_the_readme_commands_find_what_import_filed(tmp_path, meta_models, vinet_checkpoint):
    """`salcli weights import vinet.pt` then `--weights ViNet_DHF1K.pt` (issue 15, item 1),
    and an AViNet fine-tune by its file name."""
    src = tmp_path / "vinet.pt"
    src.write_bytes(vinet_checkpoint.read_bytes())
    filed = store.import_weights(src).path
    assert filed == _cache(tmp_path) / "ViNet_DHF1K.pt"
    p = Predictor(weights="ViNet_DHF1K.pt", device="cpu", precision="fp32")
    assert p.weights_path == filed and p.arch == "vinet"
    diem = _save(shape_only(meta_models["bilinear"]), tmp_path / "fine-tune.pt")
    res = store.import_weights(diem, "avinet-bilinear-diem")
    assert registry.resolve_weights("AViNet_bilinear_DIEM.pt", "bilinear") == res.path


@pytest.mark.parametrize(
    "spec, arch, entry",
    [
        ("ViNet_DHF1K.pt", "vinet", "vinet-dhf1k"),
        ("AViNet_transformer_DIEM.pt", "transformer", "avinet-transformer-diem"),
    ],
)
def test_bare_file_name_not_found_says_where_it_looked_and_its_registry_name(
    tmp_path, spec, arch, entry
):
    with pytest.raises(WeightsError) as err:
        registry.resolve_weights(spec, arch)
    msg = str(err.value)
    assert "\n" not in msg and f"{spec} not found in " in msg
    for d in registry.search_dirs():
        assert str(d) in msg
    assert f"registry entry {entry}" in msg
    assert f"salcli weights import FILE --name {entry}" in msg


def test_bare_file_name_not_found_through_the_cli(make_video, tmp_path):
    result = CliRunner().invoke(
        main_app, ["predict", str(make_video(n_frames=2)), "--weights", "ViNet_DHF1K.pt"]
    )
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(_cache(tmp_path)) in lines[0] and "vinet-dhf1k" in lines[0]


@pytest.mark.parametrize("arch", ["vinet", "bilinear", "transformer", "concat", "soundnet"])
def test_no_weights_message_reads_right_and_names_import(tmp_path, arch):
    """Issue 15, item 4: not "get it from ViNet_DHF1K.pt: the zip linked from..."."""
    with pytest.raises(WeightsError) as err:
        registry.resolve_weights(None, arch)
    msg = str(err.value)
    default = DEFAULT_WEIGHTS[arch]
    assert msg.startswith(f"no {model_name(arch)} weights: {default} not found in ")
    assert str(_cache(tmp_path)) in msg and "\n" not in msg
    assert "salcli weights import FILE --name " in msg and "(or pass weights PATH|NAME)" in msg
    assert "(or pass --weights PATH|NAME)" in err.value.spelled(flag_of)  # the CLI's line
    assert f"from {default}" not in msg and ": the zip" not in msg
    if arch in ("vinet", "bilinear", "transformer"):
        assert "from the zip linked from the README of https://github.com/samyak0210/ViNet" in msg
    if arch == "soundnet":
        assert "salcli weights download soundnet8" in msg
    if arch == "concat":
        assert "none are published" in msg


def test_no_default_weights_points_at_the_fine_tunes_that_are_there(tmp_path):
    cache = _cache(tmp_path)
    cache.mkdir()
    (cache / "AViNet_bilinear_DIEM.pt").write_bytes(b"b")
    with pytest.raises(
        WeightsError, match=r"these are there: weights avinet-bilinear-diem$"
    ) as err:
        registry.resolve_weights(None, "bilinear")
    assert err.value.spelled(flag_of).endswith("these are there: --weights avinet-bilinear-diem")


def test_resolve_registry_name_not_cached_says_what_to_fetch(tmp_path):
    with pytest.raises(WeightsError) as err:
        registry.resolve_weights("soundnet8", "soundnet")
    msg = str(err.value)
    assert "salcli weights download soundnet8" in msg
    assert str(_cache(tmp_path)) in msg and "\n" not in msg

    with pytest.raises(WeightsError) as err:
        registry.resolve_weights("avinet-bilinear-diem", "bilinear")
    msg = str(err.value)
    assert "https://github.com/samyak0210/ViNet" in msg
    assert "salcli weights import FILE --name avinet-bilinear-diem" in msg


def test_resolve_unknown_word_is_refused_with_a_suggestion():
    with pytest.raises(WeightsError, match=r"no such file \(looked in .*\) and no such registry"):
        registry.resolve_weights("vinet-dhf1000", "vinet")
    with pytest.raises(WeightsError, match=re.escape("did you mean vinet-dhf1k? `salcli weights")):
        registry.resolve_weights("vinet-dhf1000", "vinet")
    with pytest.raises(WeightsError, match=re.escape("did you mean ViNet_DHF1K.pt? give its")):
        registry.resolve_weights("vinet_dhf1k.pt", "vinet")


# ---------------------------------------------------------------------------
# import
# ---------------------------------------------------------------------------


def test_import_real_soundnet_state_dict(tmp_path):
    torch.manual_seed(0)
    src = _save(SoundNet8().state_dict(), tmp_path / "downloaded.pth")
    result = store.import_weights(src)
    assert result.arch == "soundnet" and result.entry.name == "soundnet8"
    assert result.path == _cache(tmp_path) / "soundnet8_final.pth"
    assert result.path.read_bytes() == src.read_bytes()  # the very bytes, not re-saved
    assert result.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert _cached_files(tmp_path) == ["soundnet8_final.pth"]  # no temporary left
    assert registry.resolve_weights("soundnet8", "soundnet") == result.path


@pytest.mark.parametrize(
    "umask, mode",
    [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)],
    ids=["umask-022", "umask-002", "umask-077"],
)
def test_imported_file_gets_the_umask_permissions(tmp_path, meta_models, umask, mode):
    """Like any file a user creates: a shared cache (``SALCLI_WEIGHTS`` on a group
    folder) stays readable by the group when the umask says so."""
    src = _save(shape_only(meta_models["soundnet"]), tmp_path / "s.pth")
    src.chmod(0o600)  # the mode of the file given does not carry over, the umask decides
    old = os.umask(umask)
    try:
        result = store.import_weights(src)
    finally:
        os.umask(old)
    assert stat.S_IMODE(result.path.stat().st_mode) == mode
    assert _cached_files(tmp_path) == ["soundnet8_final.pth"]


def test_import_under_a_registry_name_or_file_name(tmp_path, meta_models):
    src = _save(shape_only(meta_models["vinet"]), tmp_path / "ViNet_UCF.pt")
    assert store.import_weights(src, "vinet-ucf").path.name == "ViNet_UCFSports.pt"
    assert store.import_weights(src).path.name == DEFAULT_WEIGHTS["vinet"]
    mine = store.import_weights(src, "my_vinet.pt")
    assert mine.entry is None and mine.path.name == "my_vinet.pt"
    wrapped = _save(
        {"state_dict": {f"module.{k}": v for k, v in shape_only(meta_models["bilinear"]).items()}},
        tmp_path / "wrapped.pt",
    )
    res = store.import_weights(wrapped, "avinet-bilinear-avad")
    assert res.arch == "bilinear" and res.path.name == "AViNet_bilinear_AVAD.pt"
    assert _cached_files(tmp_path) == sorted(
        ["ViNet_UCFSports.pt", "ViNet_DHF1K.pt", "my_vinet.pt", "AViNet_bilinear_AVAD.pt"]
    )


def test_import_refuses_wrong_architecture_for_the_name(tmp_path, meta_models):
    src = _save(shape_only(meta_models["soundnet"]), tmp_path / "s.pth")
    with pytest.raises(WeightsError, match="a soundnet checkpoint, but vinet-dhf1k is vinet"):
        store.import_weights(src, "vinet-dhf1k")
    with pytest.raises(WeightsError, match="must end in .pt"):
        store.import_weights(src, "notaname")
    with pytest.raises(WeightsError, match="plain file name"):
        store.import_weights(src, "../escape.pt")
    assert _cached_files(tmp_path) == []


def test_import_checks_the_registry_checksum(tmp_path, monkeypatch, meta_models):
    src = _save(shape_only(meta_models["soundnet"]), tmp_path / "s.pth")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    extra = [
        {"name": "pinned", "arch": "soundnet", "file": "pinned.pth", "sha256": "0" * 64},
        {"name": "by-digest", "arch": "soundnet", "file": "dig.pth", "sha256_prefix": digest[:8]},
    ]
    monkeypatch.setenv("SALCLI_REGISTRY", str(_registry(tmp_path, extra)))
    with pytest.raises(WeightsError, match="not the registry's for pinned"):
        store.import_weights(src, "pinned")
    # without --name, a file whose digest the registry knows is filed under that entry
    assert store.import_weights(src).entry.name == "by-digest"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda m: {**shape_only(m), "conv1.weight": torch.zeros(3, 3)}, "has shape"),
        (
            lambda m: {k: v for k, v in shape_only(m).items() if k != "conv7.bias"},
            "1 missing",
        ),
        (lambda m: {"fc.weight": torch.zeros(2, 2)}, "not a checkpoint of a known architecture"),
        (lambda m: {"epoch": 3, "note": "no tensors"}, "no state_dict"),
    ],
    ids=["shape", "missing-key", "unknown-keys", "no-tensors"],
)
def test_import_refuses_bad_checkpoints(tmp_path, meta_models, make, message):
    src = _save(make(meta_models["soundnet"]), tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=message) as err:
        store.import_weights(src)
    assert "\n" not in str(err.value)
    assert _cached_files(tmp_path) == []


@pytest.mark.parametrize(
    "kind",
    [
        "truncated",
        "empty",
        "text",
    ],
)
def test_import_refuses_unreadable_files(tmp_path, meta_models, kind):
    src = tmp_path / "broken.pt"
    if kind == "truncated":
        data = _save(shape_only(meta_models["soundnet"]), src).read_bytes()
        src.write_bytes(data[: len(data) // 2])
    else:
        src.write_bytes(b"" if kind == "empty" else "<html>Sign in · Microsoft</html>".encode())
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint") as err:
        store.import_weights(src)
    assert "\n" not in str(err.value)
    assert _cached_files(tmp_path) == []


class _Payload:
    """Unpickling this calls open(marker, "w"): a file appears if the pickle is run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("container", ["torch-zip", "legacy-pickle"])
def test_import_refuses_a_pickle_that_runs_code(tmp_path, container):
    marker = tmp_path / "pwned.txt"
    src = tmp_path / "evil.pt"
    obj = {"conv1.weight": torch.zeros(1), "payload": _Payload(marker)}
    if container == "torch-zip":
        torch.save(obj, src)
    else:
        with open(src, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    # sanity: the file really is armed (an unsafe load would create the marker)
    assert b"open" in src.read_bytes() or b"builtins" in src.read_bytes()
    with pytest.raises(WeightsError) as err:
        store.import_weights(src)
    assert "refused" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()
    assert _cached_files(tmp_path) == []

    result = _run("import", str(src))
    assert result.exit_code == 3
    assert result.output.strip().splitlines() == [f"salcli: error: {err.value}"]
    assert not marker.exists()


def _s3d_shapes() -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return {
            k: torch.zeros((), dtype=v.dtype).expand(v.shape)
            for k, v in S3DBackbone().state_dict().items()
        }


def test_import_s3d_backbones_in_their_three_namings(tmp_path):
    ref = _s3d_shapes()
    head = {"fc.0.weight": torch.zeros(400, 1024, 1, 1, 1), "fc.0.bias": torch.zeros(400)}
    vinet_names = _save({**ref, **head}, tmp_path / "a.pt")
    assert store.import_weights(vinet_names).path.name == "S3D_kinetics400.pt"

    stage_start = {"base1": 0, "base2": 5, "base3": 8, "base4": 14}
    flat = {}
    for k, v in ref.items():
        stage, idx, rest = k.split(".", 2)
        flat[f"module.base.{stage_start[stage] + int(idx)}.{rest}"] = v
    res = store.import_weights(_save({**flat, **head}, tmp_path / "b.pt"))
    assert res.arch == "s3d"

    tv = {f"features.{i}.w": v for i, v in enumerate(ref.values())}
    tv["classifier.1.weight"] = torch.zeros(400, 1024, 1, 1, 1)
    res = store.import_weights(_save(tv, tmp_path / "c.pth"))
    assert res.arch == "s3d-torchvision" and res.path.name == "s3d-d76dad2f.pth"

    bad = dict(list(tv.items())[:-10])
    with pytest.raises(WeightsError, match="torchvision-style S3D features"):
        store.import_weights(_save(bad, tmp_path / "d.pth"))
    partial = dict(list(ref.items())[:100])
    with pytest.raises(WeightsError, match="incomplete S3D backbone"):
        store.import_weights(_save(partial, tmp_path / "e.pt"))


# ---------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------


def test_verify_ok_mismatch_unknown_missing(tmp_path, monkeypatch):
    cache = _cache(tmp_path)
    cache.mkdir()
    good, bad, pref = b"good weights", b"tampered", b"prefixed"
    extra = [
        {"name": "good", "arch": "vinet", "file": "good.pt",
         "sha256": hashlib.sha256(good).hexdigest()},
        {"name": "bad", "arch": "vinet", "file": "bad.pt",
         "sha256": hashlib.sha256(b"original").hexdigest()},
        {"name": "pref", "arch": "soundnet", "file": "pref.pth",
         "sha256_prefix": hashlib.sha256(pref).hexdigest()[:8]},
        {"name": "absent", "arch": "vinet", "file": "absent.pt",
         "sha256": hashlib.sha256(b"x").hexdigest()},
    ]  # fmt: skip
    monkeypatch.setenv("SALCLI_REGISTRY", str(_registry(tmp_path, extra)))
    (cache / "good.pt").write_bytes(good)
    (cache / "bad.pt").write_bytes(bad)
    (cache / "pref.pth").write_bytes(pref)
    (cache / "stray.pt").write_bytes(b"?")
    (cache / "good.pt.part").write_bytes(b"ignored")
    (cache / "good.pt.lock").write_bytes(b"")

    by_name = {r.name: r for r in store.verify()}
    assert {n: r.status for n, r in by_name.items()} == {
        "good": "ok",
        "bad": "mismatch",
        "pref": "ok",
        "stray.pt": "unknown",
    }
    assert by_name["pref"].partial and not by_name["good"].partial
    assert by_name["bad"].sha256 == hashlib.sha256(bad).hexdigest()
    assert [r.status for r in store.verify(["good", "absent"])] == ["ok", "missing"]

    result = _run("verify")
    assert result.exit_code == 3
    lines = result.output.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("mismatch  bad ")
    assert _run("verify", "good", "pref").exit_code == 0
    assert _run("verify", "absent").exit_code == 3
    (cache / "bad.pt").write_bytes(b"original")
    assert _run("verify").exit_code == 0


def test_verify_empty_cache():
    assert store.verify() == []
    result = _run("verify")
    assert result.exit_code == 0 and "no weights in the cache" in result.output


# ---------------------------------------------------------------------------
# the CLI: list, import
# ---------------------------------------------------------------------------


def test_cli_list_shows_entries_and_cache_state(tmp_path, meta_models):
    src = _save(shape_only(meta_models["soundnet"]), tmp_path / "s.pth")
    store.import_weights(src)
    result = _run("list")
    assert result.exit_code == 0
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()[2:]}
    assert rows["soundnet8"][:4] == ["soundnet8", "soundnet", "yes", "download"]
    assert rows["vinet-dhf1k"][2:4] == ["-", "manual:"]
    records = [json.loads(line) for line in _run("list", "--json").output.splitlines()]
    by = {r["name"]: r for r in records}
    assert by["soundnet8"]["cached"] and not by["vinet-dhf1k"]["cached"]
    assert by["s3d-kinetics400-torchvision"]["sha256_prefix"] == "d76dad2f"
    assert by["vinet-dhf1k"]["trained_on"] == "trained on DHF1K"
    assert by["stavis-visual-split1"]["licence"].startswith("none stated for the weights")


def test_cli_list_shows_every_cached_file_registered_or_not(tmp_path, meta_models):
    """Issue 15, item 2: a file `import` filed under a default name (AViNet_bilinear.pt,
    which no registry entry has) and any other file in the cache are listed, marked."""
    bilinear = store.import_weights(_save(shape_only(meta_models["bilinear"]), tmp_path / "b.pt"))
    assert bilinear.entry is None and bilinear.path.name == "AViNet_bilinear.pt"
    store.import_weights(_save(shape_only(meta_models["soundnet"]), tmp_path / "s.pth"), "my.pth")
    store.import_weights(_save(shape_only(meta_models["vinet"]), tmp_path / "v.pt"))
    cache = _cache(tmp_path)
    (cache / "notes.pt").write_text("not a checkpoint")
    (cache / "AViNet_bilinear.pt.part").write_bytes(b"half")  # a download in progress
    result = _run("list")
    assert result.exit_code == 0, result.output
    by_file = {line.split()[-1]: line.split() for line in result.output.splitlines()[2:]}
    assert by_file["AViNet_bilinear.pt"] == [
        "-", "bilinear", "yes", "unregistered", "(default)", "AViNet_bilinear.pt"
    ]  # fmt: skip
    assert by_file["my.pth"] == ["-", "soundnet", "yes", "unregistered", "my.pth"]
    assert by_file["notes.pt"] == ["-", "?", "yes", "unregistered", "notes.pt"]
    assert by_file["ViNet_DHF1K.pt"][:3] == ["vinet-dhf1k", "vinet", "yes"]
    assert "AViNet_bilinear.pt.part" not in by_file
    assert sum(row[0] != "-" for row in by_file.values()) == len(registry.load_registry())

    records = [json.loads(line) for line in _run("list", "--json").output.splitlines()]
    others = {r["file"]: r for r in records if not r["registered"]}
    assert sorted(others) == ["AViNet_bilinear.pt", "my.pth", "notes.pt"]
    assert others["AViNet_bilinear.pt"] == {
        "name": None, "arch": "bilinear", "file": "AViNet_bilinear.pt", "registered": False,
        "cached": True, "path": str(bilinear.path), "default": True,
    }  # fmt: skip
    assert others["notes.pt"]["arch"] is None and not others["my.pth"]["default"]
    assert [f.path.name for f in store.cached()] == sorted(
        ["AViNet_bilinear.pt", "my.pth", "notes.pt", "ViNet_DHF1K.pt"]
    )


def test_cli_import_good_and_bad(tmp_path, meta_models):
    src = _save(shape_only(meta_models["vinet"]), tmp_path / "v.pt")
    ok = _run("import", str(src), "--name", "vinet-hollywood")
    assert ok.exit_code == 0, ok.output
    assert "as vinet-hollywood (vinet)" in ok.output
    assert (_cache(tmp_path) / "ViNet_Hollywood.pt").read_bytes() == src.read_bytes()

    missing = _run("import", str(tmp_path / "nope.pt"))
    assert missing.exit_code == 3
    assert missing.output.strip() == f"salcli: error: weights file not found: {tmp_path}/nope.pt"

    unknown = _run("import", str(src), "--name", "no-such-entry")
    assert unknown.exit_code == 3 and "Traceback" not in unknown.output
    assert len(unknown.output.strip().splitlines()) == 1
