"""Our samplers against the reference implementation a user would otherwise pick: diffusers' DDIMScheduler and
DPMSolverMultistepScheduler (DPM-Solver++), driving the zoo's v-prediction, zero-terminal-SNR generator with the same
noise, give the same cells to within one grey level.  (20 steps: below 15, diffusers drops to lower orders on the
last steps, ``lower_order_final``, and its 3M then differs from ours by up to 3 grey levels at 10 steps.)"""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_generate

from napari_cellsynth.core import generate as generate_module
from napari_cellsynth.core.generate import GenerationSettings, generate
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.runtime import OnnxModel


@pytest.mark.parametrize("sampler", ["ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m"])
def test_sampler_matches_diffusers_scheduler(sampler, monkeypatch):
    model = OnnxModel("zoo:ddpm-jurkat4-cut10-v", providers=["CPUExecutionProvider"])
    settings = GenerationSettings("M", 4, sampler, 20, seed=5, batch_size=4)
    ours = run_to_end(generate(model, settings)).images.astype(np.int64)
    monkeypatch.setitem(generate_module.GENERATORS, "ddpm", bench_generate.diffusers_generator(sampler))
    theirs = run_to_end(generate(model, settings)).images.astype(np.int64)
    assert np.abs(ours - theirs).max() <= 1
    # and the comparison can tell samplers apart: the other spacing gives other cells
    other = GenerationSettings("M", 4, sampler, 20, seed=5, batch_size=4, spacing="leading")
    assert np.abs(run_to_end(generate(model, other)).images.astype(np.int64) - ours).mean() > 10
