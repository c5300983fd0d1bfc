"""Typed run records (issue 34, item 3): a trainer's options mapped once onto a frozen record, written into the run
folder and read back by the exporters and experiments through its fields."""

import dataclasses
import json

import pytest

from napari_cellsynth.training.records.bbdm_run import BbdmSettings
from napari_cellsynth.training.records.cellpose_run import CellposeRun, CellposeSettings
from napari_cellsynth.training.records.classifier_run import ClassifierRun, ClassifierSettings
from napari_cellsynth.training.records.cyclegan_run import CycleGanSettings
from napari_cellsynth.training.records.ddpm_run import DdpmRun, DdpmSettings
from napari_cellsynth.training.records.gan_run import GanSettings
from napari_cellsynth.training.records.pretrain_run import PretrainSettings
from napari_cellsynth.training.records.registry import read_run
from napari_cellsynth.training.trainers import bbdm as train_bbdm
from napari_cellsynth.training.trainers import cellpose as train_cellpose
from napari_cellsynth.training.trainers import classifier as train_classifier
from napari_cellsynth.training.trainers import cyclegan as train_cyclegan
from napari_cellsynth.training.trainers import ddpm as train_ddpm
from napari_cellsynth.training.trainers import gan as train_gan
from napari_cellsynth.training.trainers import pretrain as train_pretrain


@pytest.mark.parametrize("trainer, settings", [(train_classifier, ClassifierSettings), (train_ddpm, DdpmSettings),
                                               (train_gan, GanSettings), (train_bbdm, BbdmSettings),
                                               (train_cyclegan, CycleGanSettings), (train_pretrain, PretrainSettings),
                                               (train_cellpose, CellposeSettings)])
def test_the_settings_have_a_field_for_every_option_of_the_parser(trainer, settings):
    options = {a.dest for a in trainer.build_parser()._actions if a.dest != "help"}
    assert options == {f for f in settings.__dataclass_fields__}


def test_the_classifier_settings_are_the_parsed_options_and_frozen():
    settings = ClassifierSettings.from_namespace(train_classifier.config(data="cells.npz", out="run", width=8))
    assert (settings.width, settings.optimizer, settings.min_steps, settings.bf16) == (8, "adamw", 1000, False)
    with pytest.raises(dataclasses.FrozenInstanceError):  # a setting is not changed after it is mapped
        settings.width = 16


def test_a_run_writes_its_record_and_reads_it_back(tmp_path):
    """A real (two-step) run on the shipped sample: the record round-trips, the shift it resolved is in its settings,
    and the exporter's reader gets the same record."""
    from napari_cellsynth._sample_data import JURKAT_SAMPLE

    run = tmp_path / "run"
    train_classifier.main(["--data", str(JURKAT_SAMPLE), "--label-map", "jurkat4", "--width", "8", "--steps", "2",
                           "--threads", "1", "--out", str(run), "--quiet"])
    record = ClassifierRun.read(run)
    assert ClassifierRun.from_dict(record.to_dict()) == record
    assert record.classes == ["G1", "S", "G2", "M"] and record.settings.width == 8
    assert record.settings.shift == record.augmentation["shift"] == 0.0  # 2 steps: far under 50 passes
    assert record.schedule["total_steps"] == 2 and record.train_crops == sum(record.counts["train"].values())
    assert "quiet" not in json.loads((run / "config.json").read_text())["args"]


def test_records_of_older_runs_load_and_others_are_refused_in_one_line(tmp_path):
    old = {"task": "classifier", "data": "/d/cells.npz", "label_map": {"G1": ["G1"]}, "classes": ["G1"],
           "channels": ["dna"], "image_size": [40, 40], "dtype": "uint8", "value_range": [0, 255],
           "normalization": {"type": "standardize", "mean": [1.0], "std": [2.0]}, "counts": {"train": {"G1": 3}},
           "excluded": 0, "args": {"data": "/d/cells.npz", "out": "run", "arch": "resnet18", "width": 64, "seed": 0,
                                   "epochs": 30}}  # written before --bf16, --object-crop, fits and augmentation
    record = ClassifierRun.from_dict(old)
    assert (record.settings.bf16, record.fit, record.object_mask, record.augmentation) == (False, None, "none", None)
    with pytest.raises(ValueError, match="is a ddpm run, not a classifier run"):
        ClassifierRun.from_dict({**old, "task": "ddpm"})
    with pytest.raises(ValueError, match=r"incomplete \(no classes, normalization\)"):
        ClassifierRun.from_dict({k: v for k, v in old.items() if k not in ("classes", "normalization")})
    with pytest.raises(ValueError, match="has no config.json"):
        ClassifierRun.read(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a run record"):
        ClassifierRun.read(tmp_path)


def test_a_ddpm_run_records_its_resolved_net_and_schedule(ddpm_run):
    """The DDPM fixture's run: the options it left unset are recorded as resolved (the U-Net's shape, the schedule),
    and the record round-trips."""
    record = DdpmRun.read(ddpm_run)
    assert DdpmRun.from_dict(record.to_dict()) == record
    assert record.settings.base == record.net["base"] and record.settings.prediction == record.prediction
    assert record.settings.timesteps == record.schedule["num_timesteps"]
    with pytest.raises(ValueError, match="is a ddpm run, not a classifier run"):
        ClassifierRun.read(ddpm_run)


def test_the_registry_reads_a_run_by_its_task_and_names_the_runs_it_wants(ddpm_run, tmp_path):
    assert read_run(ddpm_run) == DdpmRun.read(ddpm_run)
    with pytest.raises(ValueError, match="is a ddpm run; pass the --out folder of cellsynth train classifier"):
        read_run(ddpm_run, ("classifier",))
    with pytest.raises(ValueError, match="no config.json.*cellsynth train ddpm or cellsynth train gan"):
        read_run(tmp_path, ("ddpm", "gan"))


def test_a_bbdm_run_records_its_bridge_and_condition(bbdm_run):
    from napari_cellsynth.training.records.bbdm_run import BbdmRun

    record = read_run(bbdm_run)
    assert isinstance(record, BbdmRun) and BbdmRun.from_dict(record.to_dict()) == record
    assert record.condition["channels"] == ["DAPI"] and record.schedule["num_timesteps"] == record.settings.timesteps


def test_a_cellpose_run_is_read_from_its_report(cellpose_training_run):
    record = read_run(cellpose_training_run)
    assert isinstance(record, CellposeRun) and CellposeRun.from_dict(record.to_dict()) == record
    assert record.settings.epochs == record.epochs and set(record.held_out_slides) == {"V26", "A20"}
    older = {k: v for k, v in record.to_dict().items() if k not in ("task", "args")}  # before the record was typed
    assert CellposeRun.from_dict(older).settings is None
