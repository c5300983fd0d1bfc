"""CycleGAN DAPI ↔ FISH (paper 004's baseline) on real M-FISH chromosomes: training, export, translation."""

import json

import numpy as np
import pytest
import torch

from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.core.translate import TranslationSettings, translate


@pytest.fixture(scope="module")
def cyclegan_run(mfish_pairs, tmp_path_factory):
    from napari_cellsynth.training.trainers import cyclegan as train_cyclegan

    run = tmp_path_factory.mktemp("runs") / "cyclegan"
    args = ["--data", str(mfish_pairs), "--base", "8", "--blocks", "2", "--sample-every", "4", "--ckpt-every", "2",
            "--out", str(run), "--quiet"]
    train_cyclegan.main([*args, "--steps", "4"])
    train_cyclegan.main([*args, "--steps", "6", "--resume"])
    return run


def test_training_resumes_with_both_domains(cyclegan_run, mfish_pairs):
    state = torch.load(cyclegan_run / "last.pt", weights_only=True)
    assert state["step"] == 6 and {"g_ab", "g_ba", "d_a", "d_b", "opt_g", "opt_d"} <= set(state)
    config = json.loads((cyclegan_run / "config.json").read_text())
    with np.load(mfish_pairs) as data:
        assert config["counts"] == {"A (DAPI)": len(data["dapi"]), "B (FISH)": int((data["translocation"] == 1).sum())}
    history = json.loads((cyclegan_run / "history.json").read_text())
    assert all(np.isfinite([h["gan"], h["cycle"], h["identity"], h["d"]]).all() for h in history)
    assert (cyclegan_run / "samples_000004.png").is_file() and (cyclegan_run / "loss.png").is_file()


def test_image_pool_keeps_at_most_its_size_and_mixes_old_images():
    from napari_cellsynth.training.trainers.cyclegan import ImagePool

    pool = ImagePool(4, torch.Generator().manual_seed(0))
    first = pool(torch.arange(4.0)[:, None])
    assert first.ravel().tolist() == [0, 1, 2, 3] and len(pool.images) == 4
    later = pool(torch.arange(10.0, 30.0)[:, None]).ravel()
    assert len(pool.images) == 4 and (later < 10).any() and (later >= 10).any()


def test_export_and_translate(cyclegan_run, metaphase_with_chromosomes, classifier_bundle, tmp_path):
    from napari_cellsynth.export.export_cyclegan import export_cyclegan

    bundle = export_cyclegan(cyclegan_run, tmp_path / "cyclegan")
    model = OnnxModel(bundle, kind="cyclegan")
    assert model.card.extra["export"]["parity"]["fake"]["max_abs"] < 1e-3
    dapi, labels = metaphase_with_chromosomes
    result = run_to_end(translate(model, dapi, labels, TranslationSettings(batch_size=4)))
    again = run_to_end(translate(model, dapi, labels, TranslationSettings(batch_size=6, seed=9)))
    assert result.images.shape == (6, 3, 64, 64) and result.provenance["sampler"] == "generator"
    np.testing.assert_array_equal(result.images, again.images)  # one deterministic pass, batch size irrelevant
    with pytest.raises(ValueError, match="needs one of"):
        run_to_end(translate(OnnxModel(classifier_bundle), dapi, labels, TranslationSettings()))


def test_a_cyclegan_that_paints_all_five_fluorophore_planes(mfish_pairs, metaphase_with_chromosomes, tmp_path):
    """``--planes fluorophores``: DAPI → the five planes the translocation classifier reads (paper 004's baseline
    for the generator comparison with that classifier), through export and translation of real chromosomes."""
    from napari_cellsynth.export.export_cyclegan import export_cyclegan
    from napari_cellsynth.training.trainers import cyclegan as train_cyclegan

    run = tmp_path / "cyclegan5"
    train_cyclegan.main(["--data", str(mfish_pairs), "--planes", "fluorophores", "--target", "all", "--base", "8",
                         "--blocks", "2", "--steps", "2", "--sample-every", "2", "--ckpt-every", "2", "--out", str(run),
                         "--quiet"])
    assert (run / "samples_000002.png").is_file()
    model = OnnxModel(export_cyclegan(run, tmp_path / "bundle"), kind="cyclegan")
    assert model.card.channels == [f"plane {k}" for k in range(1, 6)] and model.card.training["data"]["planes"] == \
        "fluorophores"
    dapi, labels = metaphase_with_chromosomes
    result = run_to_end(translate(model, dapi, labels, TranslationSettings(batch_size=6)))
    assert result.images.shape == (6, 5, 64, 64)


def test_the_run_record_reads_back_as_the_exporter_reads_it(cyclegan_run):
    from napari_cellsynth.training.records.cyclegan_run import CycleGanRun
    from napari_cellsynth.training.records.registry import read_run

    record = read_run(cyclegan_run)
    assert isinstance(record, CycleGanRun) and CycleGanRun.from_dict(record.to_dict()) == record
    assert record.condition["channels"] == ["DAPI"] and record.counts["A (DAPI)"] > 0
    assert record.made_class == ("translocation" if record.settings.target == "translocations" else "any")
