"""Masking, schedules and wm-pretrain runs (fresh, resumed, entry point) on a tiny mp4 folder."""

import os
import subprocess
import sys

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from worldmodel.data.clips import EpisodeClips, Mp4FolderClips, PreprocessedClips, open_clip_source
from worldmodel.errors import DatasetError
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import EncoderConfig, VisionTransformer
from worldmodel.models.preprocess import PreprocessConfig
from worldmodel.training.masking import (
    MaskPredictor,
    MaskPredictorConfig,
    MaskSpec,
    MultiBlockMasker,
    masks_to_indices,
    sample_block_mask,
)
from worldmodel.training.pretrain import PretrainConfig, lr_at, momentum_at, train

MICRO = EncoderConfig(image_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=2, mlp_dim=96)


def write_videos(folder, n=3, frames=12, size=(48, 64)):
    """Moving-square mp4s (non-square, so the center crop is exercised)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        video = np.zeros((frames, *size, 3), dtype=np.uint8)
        video[..., i % 3] = 60
        for t in range(frames):
            r, c = (4 + 2 * t) % (size[0] - 8), int(rng.integers(0, size[1] - 8))
            video[t, r : r + 8, c : c + 8] = 255
        imageio.mimwrite(folder / f"v{i}.mp4", list(video), fps=4, macro_block_size=8)
    return folder


def micro_config(data_root, run_dir, **overrides) -> PretrainConfig:
    base = dict(
        data_root=str(data_root), out_dir=str(run_dir), encoder=MICRO,
        predictor=MaskPredictorConfig(embed_dim=48, pred_dim=24, depth=1, num_heads=2),
        masks=(MaskSpec(4, (0.15, 0.15)), MaskSpec(1, (0.5, 0.5))), num_frames=4,
        batch_size=2, total_steps=6, warmup_steps=2, checkpoint_every=2, lr=1e-3,
    )  # fmt: skip
    base.update(overrides)
    return PretrainConfig(**base)


def test_block_masks_repeat_across_time_and_hit_the_ratio():
    gen = torch.Generator().manual_seed(0)
    spec = MaskSpec(num_blocks=1, spatial_scale=(0.25, 0.25), aspect_ratio=(1.0, 1.0))
    mask = sample_block_mask(spec, (3, 8, 8), batch=5, gen=gen)
    assert mask.shape == (5, 3, 8, 8)
    assert torch.equal(mask[:, 0], mask[:, 1]) and torch.equal(mask[:, 0], mask[:, 2])
    assert torch.all(mask.flatten(1).float().mean(1) == 0.25)  # one 4x4 block of 8x8
    short = MaskSpec(num_blocks=1, spatial_scale=(0.25, 0.25), temporal_scale=(0.5, 0.5))
    partial = sample_block_mask(short, (4, 8, 8), batch=3, gen=gen)
    assert torch.all(partial.any(dim=(2, 3)).sum(1) == 2)  # 2 of 4 time steps touched


def test_multi_block_ratio_and_disjoint_indices():
    gen = torch.Generator().manual_seed(1)
    masker = MultiBlockMasker((2, 8, 8), (MaskSpec(8, (0.15, 0.15)), MaskSpec(2, (0.7, 0.7))))
    (ctx_s, tgt_s), (ctx_l, tgt_l) = masker(6, gen)
    for ctx, tgt in ((ctx_s, tgt_s), (ctx_l, tgt_l)):
        assert ctx.shape[0] == tgt.shape[0] == 6
        for c, t in zip(ctx, tgt, strict=True):
            assert not set(c.tolist()) & set(t.tolist())
    assert tgt_l.shape[1] > tgt_s.shape[1]  # two 70% blocks hide more than eight 15% ones
    assert 0.2 < tgt_s.shape[1] / 128 < 0.9 and tgt_l.shape[1] / 128 > 0.6


def test_masks_to_indices_rejects_full_mask():
    with pytest.raises(ValueError, match="no context"):
        masks_to_indices(torch.ones(1, 1, 2, 2, dtype=torch.bool))


def test_schedules():
    cfg = micro_config("x", "y", total_steps=100, warmup_steps=10, lr=1.0, final_lr=0.0)
    assert lr_at(cfg, 0) == pytest.approx(0.1) and lr_at(cfg, 9) == pytest.approx(1.0)
    assert lr_at(cfg, 55) == pytest.approx(0.5) and lr_at(cfg, 100) == pytest.approx(0.0)
    assert momentum_at(cfg, 0) == cfg.ema_start and momentum_at(cfg, 100) == 1.0


def test_predictor_shape_and_position_sensitivity():
    torch.manual_seed(0)
    pred = MaskPredictor(MaskPredictorConfig(embed_dim=48, pred_dim=24, depth=1, num_heads=2))
    z = torch.randn(2, 5, 48)
    ctx = torch.tensor([[0, 1, 2, 3, 4]] * 2)
    out = pred(z, ctx, torch.tensor([[9, 20]] * 2), (2, 4, 4))
    assert out.shape == (2, 2, 48)
    # The two mask tokens are identical inputs; only their positions tell them apart.
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-6


def test_mp4_folder_clips(tmp_path):
    source = Mp4FolderClips(write_videos(tmp_path / "vids"), num_frames=4, stride=2)
    assert len(source) == 3  # 12 frames, windows of span 7 every 8 frames -> 1 per video
    clip = source[0]
    assert clip.shape == (4, 48, 64, 3) and clip.dtype == np.uint8
    x = PreprocessedClips(source, PreprocessConfig(32))[1]
    assert x.shape == (3, 4, 32, 32)


def test_pretrain_runs_exports_and_resumes_exactly(tmp_path):
    torch.set_num_threads(1)
    data = write_videos(tmp_path / "vids", n=4)
    export = train(micro_config(data, tmp_path / "a"))
    log = (tmp_path / "a" / "log.csv").read_text().strip().splitlines()
    assert len(log) == 7 and (tmp_path / "a" / "loss.png").is_file()
    assert all(np.isfinite(float(row.split(",")[1])) for row in log[1:])
    enc = FrozenEncoder.load(export)
    assert enc.encode_frames(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, 16, 48)
    # Interrupted run: stop at step 4, rerun to the end -> identical weights.
    train(micro_config(data, tmp_path / "b", stop_at_step=4))
    assert not (tmp_path / "b" / "encoder").exists()
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 4
    train(micro_config(data, tmp_path / "b"))
    a = FrozenEncoder.load(tmp_path / "a" / "encoder").encoder.state_dict()
    b = FrozenEncoder.load(tmp_path / "b" / "encoder").encoder.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)
    first = FrozenEncoder.load(tmp_path / "a" / "encoder").identity()
    assert (
        first
        != FrozenEncoder(
            VisionTransformer(MICRO),
            PreprocessConfig(32),
        ).identity()
    )


def _cli(*args, env=None, timeout=150):
    cmd = [sys.executable, "-m", "worldmodel.training.pretrain", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def test_entry_point_smoke(tmp_path):
    data = write_videos(tmp_path / "vids")
    run = tmp_path / "run"
    out = _cli(f"data_root={data}", f"out_dir={run}", "encoder=vit_nano_cpu", "total_steps=2",
               "batch_size=1", "warmup_steps=1", "predictor.pred_dim=24")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert (run / "encoder" / "model.safetensors").is_file()
    assert FrozenEncoder.load(run / "encoder").embed_dim == 96


def test_kill_minus_nine_then_resume(tmp_path):
    data = write_videos(tmp_path / "vids")
    run = tmp_path / "run"
    args = [f"data_root={data}", f"out_dir={run}", "encoder=vit_nano_cpu", "total_steps=400",
            "batch_size=1", "checkpoint_every=2", "predictor.pred_dim=24"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "worldmodel.training.pretrain", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    ckpt = run / "checkpoint.pt"
    for _ in range(600):
        if ckpt.is_file() and torch.load(ckpt, weights_only=True)["step"] >= 4:
            break
        import time

        time.sleep(0.1)
    proc.kill()  # SIGKILL
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=True)["step"]
    assert 4 <= killed_at < 400
    out = _cli(*args[:3], "total_steps=400", f"stop_at_step={killed_at + 2}", *args[4:])
    assert out.returncode == 0, out.stderr[-2000:]
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == killed_at + 2
    assert [r["step"] for r in state["history"]] == list(range(1, killed_at + 3))


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    data = write_videos(tmp_path / "vids", n=4)
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29533", "-m", "worldmodel.training.pretrain", f"data_root={data}",
           f"out_dir={run}", "encoder=vit_nano_cpu", "total_steps=3", "batch_size=1",
           "warmup_steps=1", "checkpoint_every=1", "predictor.pred_dim=24"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and len(state["history"]) == 3
    assert (run / "encoder" / "model.safetensors").is_file()


def test_episode_dataset_is_a_clip_source(tmp_path):
    synthetic = pytest.importorskip("worldmodel.data.synthetic")
    synthetic.write_synthetic_dataset(tmp_path / "data", num_episodes=2, lengths=[9, 5])
    source = open_clip_source(tmp_path / "data", num_frames=4, stride=1)
    assert isinstance(source, EpisodeClips)
    assert len(source) == 3  # windows [0:4], [4:8] of episode 0 and [0:4] of episode 1
    assert source[2].shape == (4, 32, 32, 3) and source[2].dtype == np.uint8
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no \.mp4"):
        open_clip_source(tmp_path / "empty", 4)


def test_large_blocks_always_leave_context():
    gen = torch.Generator().manual_seed(3)
    spec = MaskSpec(num_blocks=2, spatial_scale=(0.7, 0.7))
    for _ in range(20):
        mask = sample_block_mask(spec, (2, 8, 8), batch=8, gen=gen)
        assert ((~mask).flatten(1).sum(1) >= 13).all()  # >= 10% of 128 tokens visible


def test_a_nan_loss_stops_before_the_update_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    """Without the stop, one NaN step overwrote checkpoint.pt with NaN weights, which the
    loader then refuses: the run could never resume (review finding)."""
    import hashlib

    from worldmodel.training import pretrain

    data = write_videos(tmp_path / "vids", n=4)
    train(micro_config(data, tmp_path / "run", stop_at_step=4))
    ckpt = tmp_path / "run" / "checkpoint.pt"
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    real = pretrain.PreprocessedClips.__getitem__
    monkeypatch.setattr(pretrain.PreprocessedClips, "__getitem__",
                        lambda self, i: real(self, i) * float("nan"))  # fmt: skip
    with pytest.raises(FloatingPointError, match="wm-pretrain: the loss is nan at step 5"):
        train(micro_config(data, tmp_path / "run"))
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before
    monkeypatch.undo()
    train(micro_config(data, tmp_path / "run"))  # the fix: a rerun resumes from step 4
    assert (tmp_path / "run" / "encoder" / "model.safetensors").is_file()
