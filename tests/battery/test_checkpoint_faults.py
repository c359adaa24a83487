"""Battery: bad checkpoint files (training runs, world-model folders, encoders in all three
formats). Each case: the specific CheckpointError naming the file, no file changed, and a good
file still loads afterwards in the same process."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from worldmodel.checkpoints.encoder import load_hf_encoder, load_published_encoder
from worldmodel.checkpoints.predictor import load_published_predictor, save_published_format
from worldmodel.errors import CheckpointError
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer
from worldmodel.models.predictor import ACPredictor, PredictorConfig
from worldmodel.training import pretrain, run_io
from worldmodel.world_model import WorldModel

PRED = PredictorConfig(
    encoder_dim=96, width=48, depth=1, num_heads=2, mlp_dim=64, input_grid=(8, 8), pool_kernel=2
)


class _Payload:
    """Unpickling this writes a file: what a crafted checkpoint would do with pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A saved world model, an encoder folder and a published-format predictor file."""
    root = tmp_path_factory.mktemp("good")
    torch.manual_seed(0)
    encoder = FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"]))
    WorldModel(encoder, ACPredictor(PRED)).save(root / "wm")
    save_published_format(ACPredictor(PRED), root / "predictor.pt")
    torch.save({"target_encoder": encoder.encoder.state_dict()}, root / "encoder.pt")
    return root


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    return dst


def _still_loads(good: Path) -> None:
    """The process keeps working: good files load after the failure."""
    assert WorldModel.load(good / "wm").action_dim == 7
    load_published_predictor(good / "predictor.pt", cfg=PRED)


# --- training run folders (wm-train, wm-pretrain): checkpoint.pt -----------------------------


def _payload_checkpoint(path: Path, marker: Path) -> None:
    with path.open("wb") as f:
        pickle.dump({"step": 3, "model": _Payload(marker)}, f)


def _train_state_with(**changes) -> dict:
    state = {
        "model": ACPredictor(PRED).state_dict(),
        "optimizer": {},
        "scheduler": {},
        "step": 1,
        "data": {},
        "rng": run_io.rng_state(),
    }
    state.update(changes)
    return state


RUN_CASES = {
    "pickle_payload": (lambda p, m: _payload_checkpoint(p, m), "is corrupt"),
    "torch_saved_payload": (lambda p, m: torch.save({"step": _Payload(m)}, p), "refused to load"),
    "garbage_bytes": (lambda p, m: p.write_bytes(b"\x93garbage" * 50), "is corrupt"),
    "empty_file": (lambda p, m: p.write_bytes(b""), "is corrupt ("),
    "a_list": (lambda p, m: torch.save([1, 2], p), "expected a dict of training state"),
    "missing_keys": (lambda p, m: torch.save({"step": 4}, p), "missing ['model'"),
    "nan_weights": (
        lambda p, m: torch.save(
            _train_state_with(
                model={k: v.fill_(float("nan")) for k, v in ACPredictor(PRED).state_dict().items()}
            ),
            p,
        ),
        "hold NaN or inf",
    ),
}


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_wm_train_refuses_bad_checkpoint(case, tmp_path, snapshot, good):
    from worldmodel.training.run_io import load_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "pwned.txt"
    write, expected = RUN_CASES[case]
    write(run / "checkpoint.pt", marker)
    snap = snapshot(tmp_path)
    predictor = ACPredictor(PRED)
    opt = torch.optim.AdamW(predictor.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt") as err:
        load_checkpoint(run, predictor, opt, sched, sampler=None)
    assert expected in str(err.value)
    assert not marker.exists()
    snap.assert_unchanged()
    _still_loads(good)


def test_wm_pretrain_refuses_a_pickle_payload(tmp_path, snapshot, good):
    marker = tmp_path / "pwned.txt"
    torch.save({"step": 3, "student": _Payload(marker)}, tmp_path / "checkpoint.pt")
    snap = snapshot(tmp_path)
    vit = VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"])
    with pytest.raises(CheckpointError, match="refused to load"):
        pretrain._restore(tmp_path, vit, vit, torch.optim.AdamW(vit.parameters()))
    assert not marker.exists()
    snap.assert_unchanged()
    _still_loads(good)


def test_rng_state_round_trips_through_weights_only(tmp_path):
    """The RNG states are tensors and plain data: saved, loaded with weights_only, restored."""
    import random

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save({"rng": run_io.rng_state()}, tmp_path / "r.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    run_io.set_rng_state(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


# --- world-model folders ----------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _set_json(path: Path, value) -> None:
    path.write_text(json.dumps(value))


def _nan_predictor(path: Path) -> None:
    state = {k: torch.full_like(v, float("nan")) for k, v in ACPredictor(PRED).state_dict().items()}
    save_file(state, str(path))


WM_CASES = {
    "predictor_truncated": ("predictor.safetensors", _truncate, "not a readable .safetensors"),
    "predictor_empty": ("predictor.safetensors", lambda p: p.write_bytes(b""), "not a readable"),
    "predictor_nan": ("predictor.safetensors", _nan_predictor, "hold NaN or inf"),
    "json_is_a_list": ("world_model.json", lambda p: _set_json(p, [1, 2]), "must be a JSON object"),
    "json_not_json": ("world_model.json", lambda p: p.write_text("{oops"), "cannot read"),
    "json_predictor_not_object": (
        "world_model.json",
        lambda p: _set_json(p, {**json.loads(p.read_text()), "predictor": 5}),
        "expected a 'predictor' object",
    ),
    "json_bad_predictor_field": (
        "world_model.json",
        lambda p: _set_json(
            p, {**json.loads(p.read_text()), "predictor": {"input_grid": [8, 8], "nonsense": 1}}
        ),
        "bad predictor config",
    ),
    "encoder_config_not_json": ("encoder/config.json", lambda p: p.write_text("\x00\x01"), "JSON"),
    "encoder_config_a_list": (
        "encoder/config.json",
        lambda p: _set_json(p, []),
        "must be a JSON object",
    ),
    "encoder_weights_truncated": ("encoder/model.safetensors", _truncate, "truncated"),
}


@pytest.mark.parametrize("case", sorted(WM_CASES))
def test_world_model_folder_faults(case, tmp_path, snapshot, good):
    folder = _copy(good / "wm", tmp_path / "wm")
    name, damage, expected = WM_CASES[case]
    damage(folder / name)
    snap = snapshot(folder)
    with pytest.raises(CheckpointError, match=expected) as err:
        WorldModel.load(folder)
    assert name.split("/")[-1] in str(err.value)
    snap.assert_unchanged()
    _still_loads(good)


# --- published .pt files and Hugging Face folders -------------------------------------------


def _nan_encoder_pt(path: Path) -> None:
    vit = VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"])
    torch.save(
        {"encoder": {k: torch.full_like(v, float("nan")) for k, v in vit.state_dict().items()}},
        path,
    )


PT_CASES = {
    "garbage": (lambda p: p.write_bytes(b"not a zip" * 10), "cannot read"),
    "empty": (lambda p: p.write_bytes(b""), "cannot read"),
    "no_encoder_entry": (lambda p: torch.save({"model": {"a": 1}, "epoch": 3}, p), "'encoder'"),
    "entry_not_a_dict": (lambda p: torch.save({"encoder": [1]}, p), "non-empty dict"),
    "nan_weights": (_nan_encoder_pt, "hold NaN or inf"),
    "pickle_payload": (lambda p: p.write_bytes(pickle.dumps({"encoder": _Payload(p)})), "cannot"),
}


@pytest.mark.parametrize("case", sorted(PT_CASES))
def test_published_encoder_faults(case, tmp_path, snapshot, good):
    path = tmp_path / "enc.pt"
    damage, expected = PT_CASES[case]
    damage(path)
    snap = snapshot(tmp_path)
    with pytest.raises(CheckpointError, match=expected) as err:
        load_published_encoder(path, image_size=64, num_heads=2)
    assert "enc.pt" in str(err.value)
    assert not str(err.value).rstrip().endswith(":")  # the message says what went wrong
    snap.assert_unchanged()
    assert (
        load_published_encoder(good / "encoder.pt", image_size=64, num_heads=2).cfg.embed_dim == 96
    )


@pytest.mark.parametrize(
    "damage,expected",
    [
        (lambda p: p.write_bytes(b""), "not a readable torch checkpoint"),
        (lambda p: torch.save({"encoder": {}}, p), "'predictor' entry"),
        (lambda p: torch.save({"predictor": {"x": "y"}}, p), "not tensors"),
    ],
    ids=["empty", "no_predictor_entry", "entries_not_tensors"],
)
def test_published_predictor_faults(damage, expected, tmp_path, snapshot, good):
    path = tmp_path / "pred.pt"
    damage(path)
    snap = snapshot(tmp_path)
    with pytest.raises(CheckpointError, match=expected) as err:
        load_published_predictor(path, cfg=PRED)
    assert "pred.pt" in str(err.value)
    snap.assert_unchanged()
    _still_loads(good)


def _hf_folder(folder: Path, config, weights: bytes | None = None) -> Path:
    folder.mkdir()
    cfg_text = config if isinstance(config, str) else json.dumps(config)
    (folder / "config.json").write_text(cfg_text)
    if weights is None:
        save_file({"x": torch.zeros(2)}, str(folder / "model.safetensors"))
    else:
        (folder / "model.safetensors").write_bytes(weights)
    return folder


HF_OK = {"model_type": "vjepa2", "hidden_act": "gelu", "crop_size": 64, "patch_size": 8}
HF_CASES = {
    "hidden_act_silu": ({**HF_OK, "hidden_act": "silu"}, None, "hidden_act='silu'"),
    "config_not_json": ("{not json", None, "config.json: cannot read"),
    "config_a_list": ("[1]", None, "must be a JSON object"),
    "weights_truncated": (HF_OK, b"\x10\x00\x00", "model.safetensors: not a readable"),
    "weights_empty": (HF_OK, b"", "model.safetensors: not a readable"),
}


@pytest.mark.parametrize("case", sorted(HF_CASES))
def test_hugging_face_folder_faults(case, tmp_path, snapshot, good):
    config, weights, expected = HF_CASES[case]
    folder = _hf_folder(tmp_path / "hf", config, weights)
    snap = snapshot(folder)
    with pytest.raises(CheckpointError, match=expected):
        load_hf_encoder(folder)
    snap.assert_unchanged()
    _still_loads(good)
