"""Paper 001's GANs: the critic penalties in closed form, and a short real run → bundle → generation in napari."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from napari_cellsynth.core.generate import GenerationSettings, generate
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.training.nets.wgan import Critic, Generator
from napari_cellsynth.training.trainers.wgan_losses import critic_loss, divergence_penalty, gradient_penalty


class LinearCritic(nn.Module):
    """D(x) = ⟨w, x⟩: its gradient is w everywhere, so ‖∇D‖ = ‖w‖ in closed form."""

    def __init__(self, norm: float):
        super().__init__()
        w = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        self.w = nn.Parameter(w * norm / w.norm())

    def forward(self, x, cls=None):
        return (x * self.w).flatten(1).sum(1)


@pytest.mark.parametrize("norm", [0.5, 1.0, 2.0])
def test_penalties_on_a_critic_with_known_gradient_norm(norm):
    critic = LinearCritic(norm)
    real, fake = torch.randn(16, 3, 8, 8), torch.randn(16, 3, 8, 8)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(10 * (norm - 1) ** 2, abs=1e-4)
    for points in ("interpolates", "real_fake"):
        assert divergence_penalty(critic, real, fake, points=points).item() == pytest.approx(2 * norm ** 6, rel=1e-4)
    with pytest.raises(ValueError, match="unknown WGAN-div points"):
        divergence_penalty(critic, real, fake, points="midpoints")
    loss, distance = critic_loss(critic, real, fake, None, "wgan-div")
    assert distance.item() == pytest.approx((critic(real).mean() - critic(fake).mean()).item(), abs=1e-5)
    assert loss.item() == pytest.approx(-distance.item() + 2 * norm ** 6, rel=1e-4)


def test_penalty_is_computed_in_fp32_under_autocast():
    critic = LinearCritic(2.0)
    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty = gradient_penalty(critic, real.bfloat16(), fake.bfloat16())
    assert penalty.dtype == torch.float32 and penalty.item() == pytest.approx(10.0, rel=1e-3)


def test_networks_shapes_no_batchnorm_in_the_critic_and_projection():
    generator, critic = Generator(4, 32, 16, 8, num_classes=3), Critic(4, 32, 8, num_classes=3)
    images = generator(torch.randn(5, 16), torch.tensor([0, 1, 2, 0, 1]))
    assert images.shape == (5, 4, 32, 32) and images.abs().max() <= 1
    assert critic(images, torch.tensor([0, 1, 2, 0, 1])).shape == (5,)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    with pytest.raises(ValueError, match="multiple of 8"):
        Generator(3, 42)


@pytest.mark.napari
def test_short_real_gan_run_exports_and_generates_in_napari(jurkat_slice, tmp_path, make_napari_viewer, qtbot):
    """Real Jurkat anaphase cells (7 training crops: fewer than a batch) → WGAN-div → bundle → Generate widget."""
    from napari_cellsynth.export.export_gan import export_gan
    from napari_cellsynth._widgets.generate import PROVENANCE_KEY
    from napari_cellsynth.training.trainers import gan as train_gan

    run = train_gan.main(["--data", str(jurkat_slice), "--label-map", "jurkat7", "--only-class", "Anaphase",
                          "--base", "8", "--latent", "16", "--steps", "4", "--snapshot-every", "2",
                          "--sample-every", "4", "--device", "cpu", "--quiet", "--out", str(tmp_path / "gan")])
    assert sorted(p.name for p in (run / "snapshots").glob("G_*.pt")) == ["G_000002.pt", "G_000004.pt"]
    assert (run / "critic.png").is_file() and (run / "samples_000004.png").is_file()
    bundle = export_gan(run, tmp_path / "bundle")
    card = json.loads((bundle / "card.json").read_text())
    assert card["kind"] == "gan" and card["classes"] == ["Anaphase"] and card["export"]["parity"]["images"]["max_abs"] < 1e-3
    assert card["training"]["loss"] == "wgan-div" and card["training"]["settings"]["n_critic"] == 4
    snapshot = export_gan(run, tmp_path / "bundle-2", snapshot=2)
    assert json.loads((snapshot / "card.json").read_text())["training"]["steps"] == 2

    model = OnnxModel(bundle)
    first = run_to_end(generate(model, GenerationSettings("Anaphase", 5, batch_size=2, seed=3)))
    again = run_to_end(generate(model, GenerationSettings("Anaphase", 5, batch_size=2, seed=3)))
    np.testing.assert_array_equal(first.images, again.images)
    assert first.images.shape == (5, 3, 40, 40) and first.images.dtype == np.uint16
    assert first.provenance["sampler"] == "gan" and first.provenance["network_calls"] == 1

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-cellsynth", "Generate")
    widget.bundle.value = str(bundle)
    assert list(widget.class_name.choices) == ["Anaphase"] and "gan bundle" in widget.status.value
    assert "sampler settings do not apply" in widget.status.value  # the kind's note, from the generator registry
    widget.count.value = 3
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert widget.last_error is None, widget.last_error
    assert viewer.layers[-1].data.shape == (3, 3, 40, 40)
    assert viewer.layers[-1].metadata[PROVENANCE_KEY]["kind"] == "gan"
