"""BBDM on real M-FISH chromosomes: training, export, translation from DAPI, CLI and bad inputs."""

import json

import numpy as np
import pytest
import torch

from napari_cellsynth.core.bundle import BundleError
from napari_cellsynth.core.images import ImageInputError
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.outputs import read_provenance
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.core.schedules import BridgeSchedule
from napari_cellsynth.core.translate import TranslationSettings, chromosome_crops, composite, translate


def test_training_resumes_and_records_its_progress(bbdm_run, mfish_pairs, tmp_path):
    from napari_cellsynth.training.trainers import bbdm as train_bbdm

    state = torch.load(bbdm_run / "last.pt", weights_only=True)
    assert state["step"] == 12 and len(state["history"]) == 1 and np.isfinite(state["history"][0]["loss"])
    assert (bbdm_run / "loss.png").is_file() and (bbdm_run / "samples_000012.png").is_file()
    config = json.loads((bbdm_run / "config.json").read_text())
    assert config["schedule"]["kind"] == "brownian_bridge" and config["condition_channels"] == ["DAPI"]
    # fine-tuning on the translocations starts from the EMA weights and trains only on positives
    fine = tmp_path / "bbdm-fine"  # under the test's own folder, not beside the session fixture's run
    train_bbdm.main(["--data", str(mfish_pairs), "--base", "16", "--steps", "5", "--init-from", str(bbdm_run),
                     "--only-translocations", "--sample-every", "1000", "--out", str(fine), "--quiet"])
    fine_config = json.loads((fine / "config.json").read_text())
    with np.load(mfish_pairs) as data:
        assert fine_config["train_count"] == (data["translocation"] == 1).sum() >= 1
    with pytest.raises(ValueError, match="no chromosomes left"):
        train_bbdm.main(["--data", str(mfish_pairs), "--exclude-slides", "V14", "V26", "--steps", "1",
                         "--out", str(fine.parent / "none"), "--quiet"])


def test_objective_is_x_t_minus_x_0():
    """BBDM's target is m_t (y - x_0) + sqrt(δ_t) ε = x_t - x_0, for t drawn from 1…T."""
    from napari_cellsynth.training.trainers.bbdm import bridge_loss

    schedule = BridgeSchedule(1000)
    x0, y = torch.rand(64, 3, 8, 8) * 2 - 1, torch.rand(64, 3, 8, 8) * 2 - 1
    seen = {}

    class Zero(torch.nn.Module):  # predicts 0 and remembers what it was shown
        def forward(self, xt, t):
            seen.update(xt=xt, t=t)
            return torch.zeros_like(xt)

    for kind, reduce in (("l2", lambda d: (d ** 2).mean()), ("l1", lambda d: d.abs().mean())):
        torch.manual_seed(0)
        loss = bridge_loss(Zero(), x0, y, schedule, kind)
        assert 1 <= seen["t"].min() and seen["t"].max() <= 1000
        torch.testing.assert_close(loss, reduce(seen["xt"] - x0))
    m = torch.tensor(schedule.m, dtype=torch.float32)[seen["t"]][:, None, None, None]
    noise_part = seen["xt"] - (1 - m) * x0 - m * y  # what is left must be the bridge noise sqrt(δ_t) ε
    delta = torch.tensor(schedule.delta, dtype=torch.float32)[seen["t"]]
    ratio = noise_part.flatten(1).std(dim=1) / delta.sqrt().clamp_min(1e-6)
    assert 0.7 < ratio[delta > 0.01].mean() < 1.3


def test_export_card_and_parity(bbdm_bundle):
    model = OnnxModel(bbdm_bundle, kind="bbdm")
    card = model.card
    assert card.channels == ["R", "G", "B"] and card.image_size == (64, 64)
    assert card.extra["schedule"]["kind"] == "brownian_bridge" and card.outputs["prediction"] == "x_t - x_0"
    assert card.extra["condition"]["channels"] == ["DAPI"]
    assert card.extra["export"]["parity"]["prediction"]["max_abs"] < 1e-3
    with pytest.raises(BundleError, match="'ddpm' bundle is needed"):
        OnnxModel(bbdm_bundle, kind="ddpm")


def test_translate_real_chromosomes_deterministic_and_masked(bbdm_bundle, metaphase_with_chromosomes):
    dapi, labels = metaphase_with_chromosomes
    model = OnnxModel(bbdm_bundle, kind="bbdm")
    settings = TranslationSettings(steps=4, seed=3, batch_size=4)
    first = run_to_end(translate(model, dapi, labels, settings))
    again = run_to_end(translate(model, dapi, labels, settings))
    other = run_to_end(translate(model, dapi, labels, TranslationSettings(steps=4, seed=4, batch_size=4)))
    assert first.labels.tolist() == [1, 2, 3, 4, 5, 6] and first.images.shape == (6, 3, 64, 64)
    assert first.images.dtype == np.uint8 and first.provenance["seed"] == 3
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)
    assert (first.images[~np.repeat(first.masks[:, None], 3, axis=1)] == 0).all()
    # the DAPI crops are what the data set builder gives: this chromosome's pixels, zero around it
    _, crops, masks, _ = chromosome_crops(dapi, labels, (64, 64))
    assert (crops[:, 0][~masks] == 0).all() and (crops[:, 0][masks] > 0).mean() > 0.9
    pasted = composite(first, labels)
    assert pasted.shape == (3, *dapi.shape) and (pasted.sum(axis=0)[labels == 0] == 0).all()
    one = labels == 1  # chromosome 1 pasted where it lies: its crop's own pixels, at scale
    r0, c0 = first.boxes[0][:2]
    rows, cols = np.nonzero(first.masks[0])
    np.testing.assert_array_equal(pasted[:, rows + r0, cols + c0], first.images[0][:, rows, cols])
    assert one[rows + r0, cols + c0].all()


def test_bad_inputs_name_the_problem(bbdm_bundle, classifier_bundle, metaphase_with_chromosomes):
    dapi, labels = metaphase_with_chromosomes
    model = OnnxModel(bbdm_bundle, kind="bbdm")
    ok = TranslationSettings(steps=2)
    with pytest.raises(ImageInputError, match="one 2-D plane"):
        run_to_end(translate(model, np.stack([dapi, dapi]), labels, ok))
    with pytest.raises(ImageInputError, match="labels are"):
        run_to_end(translate(model, dapi, labels[:-1], ok))
    with pytest.raises(ImageInputError, match="8-bit DAPI"):
        run_to_end(translate(model, dapi.astype(np.uint16) * 256, labels, ok))
    with pytest.raises(ValueError, match="steps must be between 2"):
        run_to_end(translate(model, dapi, labels, TranslationSettings(steps=1)))
    with pytest.raises(BundleError, match="'bbdm' bundle is needed"):
        OnnxModel(classifier_bundle, kind="bbdm")


def test_cli_translate_writes_crops_composite_and_resumes(bbdm_bundle, metaphase_with_chromosomes, tmp_path, capsys):
    import tifffile

    from napari_cellsynth.cli import main

    dapi, labels = metaphase_with_chromosomes
    tifffile.imwrite(tmp_path / "V260754D.tif", dapi)
    tifffile.imwrite(tmp_path / "V260754_labels.tif", labels)
    args = ["translate", "--model", str(bbdm_bundle), "--dapi", str(tmp_path / "V260754D.tif"),
            "--labels", str(tmp_path / "V260754_labels.tif"), "--steps", "3", "--out", str(tmp_path / "out"),
            "--quiet"]
    assert main(args) == 0
    folder = tmp_path / "out" / "V260754D"
    crops = sorted((folder / "crops").glob("*.tif"))
    assert len(crops) == 6 and tifffile.imread(crops[0]).shape == (3, 64, 64)
    record = read_provenance(crops[0])
    assert record["bundle_sha256"] == OnnxModel(bbdm_bundle).card.files["model.onnx"]["sha256"]
    assert record["steps"] == 3 and record["labels"] == [1, 2, 3, 4, 5, 6]
    assert tifffile.imread(folder / "composite.tif").shape == (3, *dapi.shape)
    assert main(args) == 0 and "skipped" in capsys.readouterr().err
    assert main(["translate", "--model", str(bbdm_bundle), "--dapi", str(tmp_path / "V260754D.tif"),
                 "--labels", "a.tif", "b.tif", "--out", str(tmp_path / "x")]) == 2


@pytest.mark.napari
def test_generate_from_dapi_widget(make_napari_viewer, qtbot, bbdm_bundle, metaphase_with_chromosomes, tmp_path):
    from napari_cellsynth._widgets.translate import PROVENANCE_KEY, TranslateWidget

    dapi, labels = metaphase_with_chromosomes
    viewer = make_napari_viewer()
    dapi_layer = viewer.add_image(dapi, name="DAPI", scale=(0.5, 0.5))
    labels_layer = viewer.add_labels(labels, name="chromosomes", scale=(0.5, 0.5))
    widget = TranslateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.reset_choices()
    widget.dapi_layer.value, widget.labels_layer.value = dapi_layer, labels_layer
    widget.bundle.value, widget.steps.value, widget.batch_size.value = str(bbdm_bundle), 3, 4
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert widget.last_error is None, widget.last_error
    crops, pasted = viewer.layers[-2], viewer.layers[-1]
    assert crops.rgb and crops.data.shape == (6, 64, 64, 3) and crops.data.dtype == np.uint8
    assert pasted.rgb and pasted.data.shape == (*dapi.shape, 3) and tuple(pasted.scale) == (0.5, 0.5)
    assert crops.metadata[PROVENANCE_KEY]["labels"] == [1, 2, 3, 4, 5, 6]
    viewer.layers.selection.active = crops
    widget.save_folder.value = str(tmp_path / "saved")
    paths = widget.save_selected()
    assert len(paths) == 6 and read_provenance(paths[0])["steps"] == 3
    # a DAPI layer of the wrong rank: a clear error, the viewer stays usable
    viewer.add_image(np.stack([dapi, dapi]), name="two planes")
    widget.reset_choices()
    widget.dapi_layer.value = viewer.layers["two planes"]
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert "one 2-D plane" in str(widget.last_error) and widget.run_button.enabled


def test_a_bbdm_that_paints_all_five_fluorophore_planes(mfish_pairs, metaphase_with_chromosomes, tmp_path):
    """``--target fluorophores``: DAPI → the five planes the translocation classifier reads, through export and
    translation of a real metaphase's chromosomes."""
    from napari_cellsynth.export.export_bbdm import export_bbdm
    from napari_cellsynth.training.trainers import bbdm as train_bbdm

    run = tmp_path / "bbdm5"
    train_bbdm.main(["--data", str(mfish_pairs), "--target", "fluorophores", "--base", "16", "--steps", "3",
                     "--sample-every", "3", "--sample-steps", "4", "--ckpt-every", "3", "--out", str(run), "--quiet"])
    assert (run / "samples_000003.png").is_file()
    model = OnnxModel(export_bbdm(run, tmp_path / "bundle"), kind="bbdm")
    assert model.card.channels == [f"plane {k}" for k in range(1, 6)]
    dapi, labels = metaphase_with_chromosomes
    result = run_to_end(translate(model, dapi, labels, TranslationSettings(steps=3, seed=0, batch_size=6)))
    assert result.images.shape == (6, 5, 64, 64) and composite(result, labels).shape == (5, *dapi.shape)


def test_snapshots_give_a_quality_curve_on_held_out_slides(mfish_pairs, tmp_path, capsys):
    """``--snapshot-every``: fp16 EMA snapshots along training, each exported and scored by experiments.bridge_curve
    (paired SSIM on the chromosome's pixels, KID on the zoo translocation classifier's features) on a slide the run
    never trained on; a rerun scores nothing again; ``--snapshot-every 0`` keeps none."""
    from napari_cellsynth.export.common import snapshot_steps
    from napari_cellsynth.training.experiments import bridge_curve
    from napari_cellsynth.training.trainers import bbdm as train_bbdm

    run = tmp_path / "bbdm5"
    common = ["--data", str(mfish_pairs), "--target", "fluorophores", "--base", "16", "--steps", "4",
              "--sample-every", "4", "--sample-steps", "2", "--ckpt-every", "2", "--quiet"]
    train_bbdm.main([*common, "--exclude-slides", "V26", "--snapshot-every", "2", "--out", str(run)])
    assert snapshot_steps(run) == [2, 4]
    out = tmp_path / "curve" / "bridge_curve.json"
    args = ["--run", str(run), "--classifier", "zoo:classifier-translocations", "--slides", "V26", "--count", "24",
            "--steps", "3", "--out", str(out)]
    record = bridge_curve.main(args)
    assert [r["step"] for r in record["rows"]] == [2, 4] and record["reference"].startswith("24 chromosomes")
    assert record["real_halves_kid_x1000"] < min(r["kid_x1000"] for r in record["rows"])  # 4 steps: far from real
    for row in record["rows"]:
        assert -1 < row["ssim"] <= 1 and 0 <= row["ssim_std"] and np.isfinite(row["kid_x1000"])
    assert (out.parent / "bridge_curve.png").stat().st_size > 0
    capsys.readouterr()
    assert bridge_curve.main(args)["rows"] == record["rows"] and "step" not in capsys.readouterr().err  # none again
    with pytest.raises(ValueError, match="other settings"):
        bridge_curve.main([*args[:-2], "--count", "12", "--out", str(out)])
    with pytest.raises(ValueError, match="in the run's training data"):
        bridge_curve.main([*args[:5], "V14", *args[6:-1], str(tmp_path / "v14.json")])

    none = tmp_path / "none"
    train_bbdm.main([*common, "--snapshot-every", "0", "--out", str(none)])
    assert snapshot_steps(none) == [] and (none / "last.pt").is_file()
