"""keep_freed_memory: the mallopt calls it makes, its opt-out, and that it stops page faults."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import planning.cpu_memory as cm

FAULTS = """
import resource, torch
from planning.cpu_memory import keep_freed_memory
print(keep_freed_memory())
from worldmodel.models.predictor import PREDICTOR_PRESETS, ACPredictor
torch.manual_seed(0)
model = ACPredictor(PREDICTOR_PRESETS["tiny"]).eval()
n, d = model.cfg.tokens_per_frame, model.cfg.encoder_dim
z, a, s = torch.randn(256, 1, n, d), torch.randn(256, 1, 7), torch.randn(256, 1, 7)
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
with torch.no_grad():  # one CEM iteration's rollout of 256 samples, as in planning
    for _ in range(2):
        model(z, a, s)
    before = faults()
    for _ in range(10):
        model(z, a, s)
print(faults() - before)
"""


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


@pytest.fixture
def fake_libc(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(cm, "_glibc", lambda: libc)
    monkeypatch.setattr(cm, "_applied", {})
    monkeypatch.delenv(cm.ENV_VAR, raising=False)
    return libc


def test_sets_all_three_parameters_once(fake_libc):
    assert cm.keep_freed_memory(trim_threshold_mb=512, top_pad_mb=16)
    assert fake_libc.calls == [
        (cm.M_MMAP_THRESHOLD, 32 << 20), (cm.M_TRIM_THRESHOLD, 512 << 20), (cm.M_TOP_PAD, 16 << 20),
    ]  # fmt: skip
    assert cm.keep_freed_memory(trim_threshold_mb=512, top_pad_mb=16)
    assert len(fake_libc.calls) == 3  # idempotent


def test_opt_out_bad_values_and_no_glibc(fake_libc, monkeypatch):
    monkeypatch.setenv(cm.ENV_VAR, "0")
    assert not cm.keep_freed_memory() and fake_libc.calls == []
    monkeypatch.delenv(cm.ENV_VAR)
    for bad in (dict(trim_threshold_mb=0), dict(trim_threshold_mb=2048), dict(top_pad_mb=-1)):
        with pytest.raises(ValueError, match="trim_threshold_mb"):
            cm.keep_freed_memory(**bad)
    monkeypatch.setattr(cm, "_glibc", lambda: None)
    assert not cm.keep_freed_memory()


def _thp_always() -> bool:
    try:
        return "[always]" in open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or cm._glibc() is None
                    or "malloc" in os.environ.get("LD_PRELOAD", "") or _thp_always(),
                    reason="counts glibc malloc's 4 kB page faults")  # fmt: skip
def test_large_tensors_stop_faulting_pages_in():
    def run(setting: str) -> tuple[str, int]:
        env_flag = "1" if setting == "keep" else "0"
        out = subprocess.run(
            [sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True,
            env={**os.environ, cm.ENV_VAR: env_flag},
        )  # fmt: skip
        kept, faults = out.stdout.split()
        return kept, int(faults)

    (kept, with_it), (off, without) = run("keep"), run("default")
    assert kept == "True" and off == "False"
    # glibc default: every forward faults its activations in again (25-110 k pages over the 10
    # forwards here); kept: the freed pages are reused (0-2.3 k here: one-off heap growth)
    assert without > 4 * max(with_it, 1000)
