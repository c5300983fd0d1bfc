import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from napari_cellsynth.core.bundle import (BundleError, Card, load_arrays, read_card, save_bundle,
                                          verify_files)


def make_card(kind="classifier", **changes) -> Card:
    card = Card(kind=kind, name="test", classes=["a", "b"], channels=["DNA"],
                input={"size": [32, 32]}, normalization={"type": "standardize", "mean": [1.0], "std": [2.0]},
                files={"model.onnx": {}})
    return replace(card, **changes)


def write_bundle(folder, card=None, arrays=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(b"not really onnx, but hashed all the same")
    return save_bundle(folder, card or make_card(), arrays)


def test_card_round_trip_keeps_every_section(tmp_path):
    card = make_card(training={"seed": 3}, versions={"torch": "x"}).with_sections(schedule={"kind": "cosine"})
    write_bundle(tmp_path / "b", card)
    again = read_card(tmp_path / "b")
    assert again.to_dict() == replace(card, files=again.files).to_dict()  # save_bundle wrote the files' sha256
    assert again.extra["schedule"] == {"kind": "cosine"}
    assert again.image_size == (32, 32) and again.n_channels == 1
    assert len(again.files["model.onnx"]["sha256"]) == 64


def test_sha256_mismatch_is_refused_with_the_fix(tmp_path):
    folder = write_bundle(tmp_path / "b")
    with open(folder / "model.onnx", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(BundleError, match="does not match its recorded sha256.*re-export"):
        verify_files(folder, read_card(folder))


def test_missing_file_named_in_card(tmp_path):
    folder = write_bundle(tmp_path / "b")
    (folder / "model.onnx").unlink()
    with pytest.raises(BundleError, match="missing 'model.onnx'"):
        verify_files(folder, read_card(folder))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("kind"), "no 'kind' entry"),
    (lambda d: d.update(kind="vae"), "unknown bundle kind"),
    (lambda d: d["input"].update(size=[32]), r"input.size' must be \[height, width\]"),
    (lambda d: d.update(classes=["only"]), "at least two 'classes'"),
    (lambda d: d["normalization"].update(std=[0.0]), "'std' must be positive"),
    (lambda d: d["normalization"].update(mean=[1.0, 2.0]), "one value per channel"),
    (lambda d: d.update(schema_version=99), "newer than this napari-cellsynth"),
    (lambda d: d["files"].update({"../evil": {"sha256": "0"}}), "plain name"),
])
def test_invalid_cards_name_the_problem(tmp_path, edit, message):
    folder = write_bundle(tmp_path / "b")
    data = json.loads((folder / "card.json").read_text())
    edit(data)
    (folder / "card.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=message):
        read_card(folder)


def test_corrupt_json_and_missing_folder(tmp_path):
    folder = write_bundle(tmp_path / "b")
    (folder / "card.json").write_text("{ not json")
    with pytest.raises(BundleError, match="not valid JSON.*corrupt"):
        read_card(folder)
    with pytest.raises(BundleError, match="does not exist"):
        read_card(tmp_path / "nowhere")
    shutil.rmtree(folder)
    folder.mkdir()
    with pytest.raises(BundleError, match="no card.json"):
        read_card(folder)


def test_arrays_round_trip_and_pickles_are_refused(tmp_path):
    arrays = {"centroids": np.arange(6.0).reshape(3, 2)}
    folder = write_bundle(tmp_path / "b", arrays=arrays)
    card = read_card(folder)
    verify_files(folder, card)
    np.testing.assert_array_equal(load_arrays(folder, card)["centroids"], arrays["centroids"])
    # an arrays.npz with an object array (pickled) and a matching sha256 still never unpickles
    np.savez(folder / "arrays.npz", evil=np.array([{"a": 1}], dtype=object))
    card = read_card(folder)
    save_bundle(folder, card)
    with pytest.raises(BundleError, match="pickled objects"):
        load_arrays(folder, read_card(folder))


def test_typed_card_views_read_each_kind_and_name_what_is_missing():
    """Schedule, null class, condition, latent and label map are read through typed views (issue 13)."""
    from napari_cellsynth.core.schedules import BridgeSchedule, NoiseSchedule

    ddpm = make_card(kind="ddpm", extra={"schedule": NoiseSchedule("cosine", 100, {}, "v").to_card(), "null_class": 4})
    assert ddpm.ddpm.schedule.prediction == "v" and ddpm.ddpm.null_class == 4 and ddpm.ddpm.x0_bounds is None
    bbdm = make_card(kind="bbdm", extra={"schedule": BridgeSchedule(200, 0.5).to_card(),
                                         "condition": {"channels": ["DAPI"], "normalization": {"kind": "none"}}})
    assert bbdm.bridge.schedule == BridgeSchedule(200, 0.5) and bbdm.condition.channels == ["DAPI"]
    gan = make_card(kind="gan", extra={"gan": {"latent": 128, "conditional": True}})
    assert gan.gan.latent == 128 and gan.gan.conditional
    with pytest.raises(BundleError, match="the gan section belongs to gan bundles"):
        ddpm.gan
    with pytest.raises(BundleError, match="its bridge section is incomplete"):
        make_card(kind="bbdm").bridge
    with pytest.raises(BundleError, match="the condition section belongs to bbdm and cyclegan"):
        gan.condition
    labelled = make_card(training={"data": {"label_map": {"M": ["Prophase", "Metaphase"]}}})
    assert labelled.trained.label_map == {"M": ["Prophase", "Metaphase"]} and make_card().trained.label_map is None
    assert make_card(outputs={"names": ["logits", "features"]}).output_names == ["logits", "features"]
    assert make_card(kind="ddpm", outputs={"names": ["v"]}).output_name == "v"
    with pytest.raises(BundleError, match="its card names no output; re-export it"):
        make_card(kind="gan").output_name
    recorded = make_card(training={"data": {"source": "/d/cells.npz"}, "test_metrics": {"macro_f1": 0.8}})
    assert (recorded.trained.source, recorded.trained.test_metrics) == ("/d/cells.npz", {"macro_f1": 0.8})
    assert (make_card().trained.source, make_card().trained.test_metrics) == (None, None)
    # a generator's train_counts and a classifier's split counts read as one thing: crops per class
    assert make_card(training={"data": {"train_counts": {"M": 34}}}).trained.counts == {"M": 34}
    assert make_card(training={"data": {"counts": {"train": {"G1": 3, "M": 1}}}}).trained.counts == {"G1": 3, "M": 1}
    assert make_card(training={"data": {"counts": {"train": {"G1": 3, "M": 1}}}}, classes=["G1", "M"]).rarest_class == "M"


def test_the_card_says_how_objects_are_cut_like_the_training_crops():
    assert make_card(input={"size": [32, 32], "object_crop": "resize"}).object_crop == "resize"
    # cards from before it was recorded: boxes resized when mixed sizes were resized, windows otherwise
    assert make_card(input={"size": [32, 32], "fit": "resize"}).object_crop == "resize"
    assert make_card(input={"size": [32, 32], "fit": "pad"}).object_crop == "window"
    assert make_card().object_crop == "window"

def test_a_damaged_section_is_refused_when_the_bundle_is_read_and_the_rest_read_typed(tmp_path):
    """Issue 34 item 3: each kind's typed sections are read when the bundle is read, so a damaged card is refused
    then, in one line; Cellpose's network, what training recorded, a classifier's feature width and int8 variant
    are typed views (older cards without them read as None or Cellpose's defaults)."""
    from napari_cellsynth.core.bundle import CELLPOSE_NBASE
    from napari_cellsynth.core.schedules import NoiseSchedule

    ddpm = make_card(kind="ddpm", extra={"schedule": NoiseSchedule("cosine", 100, {}, "v").to_card(), "null_class": 4},
                     training={"net": {"base": 32}, "data": {"split": {"seed": 0}}})
    folder = write_bundle(tmp_path / "ddpm", ddpm)
    assert read_card(folder).trained.net == {"base": 32} and read_card(folder).trained.split == {"seed": 0}
    data = json.loads((folder / "card.json").read_text())
    del data["null_class"]
    (folder / "card.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="its ddpm section is incomplete.*re-export it"):
        read_card(folder)
    broken = make_card(extra={"variants": {"int8": {"file": "model.int8.onnx"}}})
    with pytest.raises(BundleError, match="its int8 variant section is incomplete"):
        read_card(write_bundle(tmp_path / "int8", broken))
    old = make_card(kind="cellpose", training={"held_out_slides": ["A04"], "test_ap50": [0.67, 0.1]})
    assert old.cellpose.nbase == CELLPOSE_NBASE and old.cellpose.nchan == 2 and old.cellpose.weights == "fp32"
    assert old.trained.held_out_slides == ("A04",) and old.trained.test_ap50 == 0.67
    new = make_card(kind="cellpose", extra={"cellpose": {"nbase": [16, 32, 64, 128], "nchan": 1, "weights": "fp16"}})
    assert (new.cellpose.nbase, new.cellpose.nchan, new.cellpose.weights) == ((16, 32, 64, 128), 1, "fp16")
    assert make_card(outputs={"feature_dim": 256}).feature_dim == 256 and make_card().feature_dim is None
    assert make_card().int8 is None and make_card(training={"arch": "resnet18", "width": 32}).trained.width == 32


def test_each_kind_has_its_own_card_class_and_graph_names():
    """``Card(kind=…)`` is the kind's frozen class (a changed card keeps it), which owns its sections and its graph's
    input names; the zoo's bundles read as their kinds' classes."""
    from napari_cellsynth.core.cards import CARD_KINDS, ClassifierCard, DdpmCard, GanCard
    from napari_cellsynth.core.zoo import read_registry

    card = make_card()
    assert type(card) is ClassifierCard and type(card.with_sections(decision={})) is ClassifierCard
    assert type(make_card("ddpm")) is DdpmCard and set(CARD_KINDS) == {"classifier", "ddpm", "bbdm", "gan",
                                                                        "cyclegan", "cellpose"}
    assert card.feeds("crops") == {"images": "crops"}
    assert make_card("ddpm").feeds(1, 2, 3) == {"x": 1, "t": 2, "class": 3}
    unconditional = make_card("gan", extra={"gan": {"latent": 8, "conditional": False}})
    assert unconditional.feeds("z") == {"z": "z"} and GanCard.INPUTS == ("z", "class")
    with pytest.raises(BundleError, match="graph takes"):
        card.feeds(1, 2)
    with pytest.raises(BundleError, match="cannot become a ddpm one"):
        replace(card, kind="ddpm")
    conditional = make_card("gan", extra={"gan": {"latent": 8, "conditional": True}})
    assert conditional.feeds("z", "c") == {"z": "z", "class": "c"}
    # a damaged section of the card's own kind is named as incomplete, not blamed on another kind
    with pytest.raises(BundleError, match="its cellpose section is incomplete"):
        make_card("cellpose", extra={"cellpose": [1, 2]}).cellpose
    with pytest.raises(BundleError, match="its training section is incomplete"):
        make_card(training={"data": ["not", "a", "dict"]}).trained
    with pytest.raises(BundleError, match="is a classifier bundle; the ddpm section belongs to ddpm bundles"):
        card.ddpm
    with pytest.raises(AttributeError):
        card.not_a_section
    kinds = set()
    for name in read_registry():
        zoo = read_card(f"zoo:{name}")  # every section of its kind read and checked
        assert type(zoo) is CARD_KINDS[zoo.kind] and zoo.KIND == zoo.kind
        kinds.add(zoo.kind)
    assert {"classifier", "ddpm", "cellpose"} <= kinds
