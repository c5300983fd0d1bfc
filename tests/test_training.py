import json
import subprocess

import numpy as np
import pytest
import torch
from conftest import CELLSYNTH

from napari_cellsynth.training.data.labelled_crops import CropBatches, channel_stats, stratified_split, tiny_classes
from napari_cellsynth.training.nets.resnet import ResNetClassifier


@pytest.mark.parametrize("arch, size, channels", [("resnet18", 32, 1), ("resnet18", 40, 3), ("resnet34", 64, 5),
                                                  ("resnet18", 128, 2)])
def test_resnet_takes_any_channel_count_and_small_sizes(arch, size, channels):
    model = ResNetClassifier(arch, channels, 4, size, width=8).eval()
    logits, features = model(torch.zeros(2, channels, size, size))
    assert logits.shape == (2, 4) and features.shape == (2, model.feature_dim) == (2, 64)


def test_split_is_stratified_disjoint_and_seeded():
    y = np.repeat([0, 1, 2], [500, 50, 10])
    split = stratified_split(y, seed=1)
    assert sum(len(v) for v in split.values()) == len(y)
    assert not set(split["train"]) & set(split["test"]) and not set(split["val"]) & set(split["test"])
    assert np.bincount(y[split["train"]]).tolist() == [300, 30, 6]
    assert stratified_split(y, seed=1)["test"].tolist() == split["test"].tolist()
    assert stratified_split(y, seed=2)["test"].tolist() != split["test"].tolist()
    with pytest.raises(ValueError, match="at least two classes need 5 or more crops"):
        stratified_split(np.array([0, 0, 0, 1, 1]), seed=0)


def test_a_class_of_two_crops_is_trained_on_and_left_out_of_validation_and_test():
    y = np.repeat([0, 1, 2, 3], [40, 12, 2, 4])
    split = stratified_split(y, seed=0)
    assert tiny_classes(y) == [2, 3]
    assert np.bincount(y[split["train"]], minlength=4)[2:].tolist() == [2, 4]
    for part in ("val", "test"):
        assert not np.isin(y[split[part]], [2, 3]).any() and set(y[split[part]]) == {0, 1}
    # the split of the evaluable classes is the one they would get without the tiny classes
    big = np.flatnonzero(y < 2)
    alone = stratified_split(y[big], seed=0)
    assert big[alone["test"]].tolist() == split["test"].tolist()


def test_batches_augment_with_flips_rotations_and_brightness():
    rng = np.random.default_rng(0)
    images = rng.integers(100, 200, size=(64, 2, 8, 8)).astype(np.uint16)
    mean, std = channel_stats(images)
    norm = {"type": "standardize", "mean": mean, "std": std}
    plain = next(iter(CropBatches(images, np.zeros(64), norm, 64, augment=False, seed=0)))[0]
    np.testing.assert_allclose(plain.mean(dim=(0, 2, 3)), 0, atol=1e-4)
    batches = CropBatches(images, np.arange(64), norm, 64, augment=True, seed=0)
    x, y = next(iter(batches))
    raw = (x - batches.offset) / batches.scale
    for out, index in zip(raw, y):
        original = torch.from_numpy(images[index].astype(np.float32))
        ratio = out.sum() / original.sum()
        assert 0.5 - 1e-4 <= ratio <= 1.5 + 1e-4  # brightness 50–150 %
        candidates = [torch.rot90(o, k, dims=(-2, -1)) for o in (original, original.flip(-1), original.flip(-2),
                                                                 original.flip(-1).flip(-2)) for k in range(4)]
        assert any(torch.allclose(out / ratio, c, rtol=1e-4) for c in candidates)


def replayed_augmentation(images: np.ndarray, seed: int, max_shift: int, brightness: bool = True):
    """The batch of one shuffled, augmented pass over all ``images`` redone in numpy from the same seeded draws
    (order, flips, turns, brightness, then the shift's (dy, dx)), and the generator's state after them."""
    g = torch.Generator().manual_seed(seed)
    n = len(images)
    order = torch.randperm(n, generator=g).numpy()
    flip_h, flip_v = (torch.rand(n, generator=g).numpy() < 0.5 for _ in range(2))
    turns = torch.randint(0, 4, (n,), generator=g).numpy()
    gain = 0.5 + torch.rand(n, generator=g).numpy() if brightness else np.ones(n)
    offsets = np.zeros((n, 2), int)
    if max_shift:
        offsets = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=g).numpy()
    out = []
    for k, i in enumerate(order):
        x = images[i].astype(np.float32)
        x = x[..., ::-1] if flip_h[k] else x
        x = x[..., ::-1, :] if flip_v[k] else x
        x = np.rot90(x, turns[k], axes=(-2, -1)) * np.float32(gain[k])
        (dy, dx), h, w = offsets[k], *x.shape[-2:]
        padded = np.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift)), mode="edge")
        out.append(padded[:, max_shift - dy:max_shift - dy + h, max_shift - dx:max_shift - dx + w])
    return np.stack(out), order, offsets, g.get_state()


@pytest.mark.parametrize("max_shift, brightness", [(0, True), (0, False), (3, True), (3, False)])
def test_batches_shift_each_crop_by_its_drawn_offset(max_shift, brightness):
    """A shift moves a crop's content by the seeded (dy, dx), edges repeated; shape and dtype kept.
    Without one (``--shift 0``) the batches and the generator's draws are exactly those of the old
    flips + turns + brightness."""
    square = np.random.default_rng(2).integers(0, 1000, size=(64, 2, 12, 12)).astype(np.uint16)
    norm = {"type": "standardize", "mean": [0.0, 0.0], "std": [1.0, 1.0]}
    batches = CropBatches(square, np.arange(64), norm, 64, augment=True, seed=5, brightness=brightness,
                          max_shift=max_shift)
    x, y = next(iter(batches))
    want, order, offsets, state = replayed_augmentation(square, 5, max_shift, brightness)
    assert x.shape == (64, 2, 12, 12) and x.dtype == torch.float32
    assert y.tolist() == order.tolist()
    np.testing.assert_allclose(x.numpy(), want, rtol=1e-6)
    assert torch.equal(batches.generator.get_state(), state)  # no draw more or less than replayed
    if max_shift:
        assert np.abs(offsets).max() == max_shift and len(np.unique(offsets, axis=0)) > 20
    flat = square[..., :10]  # non-square crops: no turns, the same shift
    assert next(iter(CropBatches(flat, np.arange(64), norm, 64, augment=True, seed=0,
                                 max_shift=max_shift)))[0].shape == (64, 2, 12, 10)


def test_shift_moves_content_and_repeats_the_edges():
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(2, 1, 5, 6)
    out = CropBatches.shift(x, torch.tensor([[1, -2], [0, 0]]), pad=2)
    assert torch.equal(out[0, 0, 1:, :4], x[0, 0, :4, 2:])  # content one row down, two columns left
    assert torch.equal(out[0, 0, 0], out[0, 0, 1]) and (out[0, 0, :, 4:] == out[0, 0, :, 3:4]).all()  # edges
    assert torch.equal(out[1], x[1])


def test_shifted_batches_are_reproducible_under_the_seed():
    images = np.random.default_rng(0).integers(0, 255, size=(40, 1, 8, 8)).astype(np.uint8)
    norm = {"type": "standardize", "mean": [0.0], "std": [1.0]}

    def one_pass(seed):
        batches = CropBatches(images, np.arange(40), norm, 16, augment=True, seed=seed, max_shift=2)
        return torch.cat([x for x, _ in batches])

    assert torch.equal(one_pass(3), one_pass(3)) and not torch.equal(one_pass(3), one_pass(4))
    with pytest.raises(ValueError, match="max_shift"):
        CropBatches(images, np.arange(40), norm, 16, augment=True, seed=0, max_shift=8)


def test_shift_option_is_a_fraction_of_the_side():
    from types import SimpleNamespace

    from napari_cellsynth.training.trainers.arguments import parse_checked
    from napari_cellsynth.training.trainers.classifier import build_parser, max_shift

    crops = np.zeros((1, 3, 40, 40))
    args = parse_checked(build_parser(), ["--data", "x.npz", "--out", "run", "--shift", "0.1"])
    assert max_shift(args, crops) == 4
    assert max_shift(SimpleNamespace(shift=0.0, no_augment=False), crops) == 0
    assert max_shift(SimpleNamespace(shift=0.1, no_augment=True), crops) == 0
    with pytest.raises(ValueError, match="--shift is a fraction"):
        parse_checked(build_parser(), ["--data", "x.npz", "--out", "run", "--shift", "1.5"])


def test_shift_left_unset_is_on_for_small_data_and_off_for_large(jurkat_slice, tmp_path):
    """Unset, --shift is 0.1 for a run of at least 50 passes over its training crops and 0 below (results §1b):
    the default schedule (≥ 1,000 steps of 64, else 30 epochs) makes 355 passes over 180 crops and 30 over 4,340.
    A given --shift is kept.  The run's config records what ran and why."""
    import subprocess

    from conftest import CELLSYNTH
    from napari_cellsynth.training.trainers.arguments import parse_checked
    from napari_cellsynth.training.trainers.classifier import build_parser, planned_passes, resolved_shift

    args = parse_checked(build_parser(), ["--data", "x.npz", "--out", "run"])
    assert args.shift is None
    assert planned_passes(args, 180) == pytest.approx(1000 * 64 / 180)
    assert planned_passes(args, 4340) == pytest.approx(30 * 68 * 64 / 4340)
    assert resolved_shift(None, planned_passes(args, 180)) == 0.1
    assert resolved_shift(None, planned_passes(args, 757)) == 0.1  # the napari tests' slice: 85 passes
    assert resolved_shift(None, planned_passes(args, 4340)) == 0.0
    assert resolved_shift(0.05, 30.0) == 0.05 and resolved_shift(0.0, 355.0) == 0.0
    for extra, shift, given in (([], 0.0, False), (["--shift", "0.1"], 0.1, True)):
        out = tmp_path / f"run-{given}"
        done = subprocess.run([CELLSYNTH, "train", "classifier", "--data", str(jurkat_slice), "--label-map", "jurkat4",
                               "--width", "8", "--steps", "2", "--quiet", "--out", str(out), *extra],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        record = json.loads((out / "config.json").read_text())["augmentation"]
        n_train = sum(json.loads((out / "config.json").read_text())["counts"]["train"].values())
        assert (record["shift"], record["shift_given"]) == (shift, given)
        assert record["passes"] == pytest.approx(2 * 64 / n_train, abs=0.05)  # 2 steps: far below 50 passes


def test_training_batches_shuffle_also_without_augmentation():
    """A fixed order (real crops, then every extra crop of one class) ends each epoch on one class."""
    images = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1).repeat(4, axis=2).repeat(4, axis=3)
    norm = {"type": "standardize", "mean": [0.0], "std": [1.0]}
    shuffled = CropBatches(images, np.arange(40), norm, 8, augment=False, seed=0, shuffle=True)
    first, second = (np.concatenate([y.numpy() for _, y in shuffled]) for _ in range(2))
    assert sorted(first.tolist()) == list(range(40)) and first.tolist() != list(range(40))
    assert first.tolist() != second.tolist()  # a new order every epoch
    x, y = next(iter(shuffled))
    assert np.array_equal(x[:, 0, 0, 0].numpy(), y.numpy())  # no augmentation: crops untouched
    evaluation = CropBatches(images, np.arange(40), norm, 8, augment=False, seed=0)
    assert np.concatenate([y.numpy() for _, y in evaluation]).tolist() == list(range(40))


@pytest.mark.full_data
def test_training_run_writes_everything_and_learns(trained_run):
    for name in ("config.json", "split.npz", "samples.npz", "best.pt", "last.pt", "history.json",
                 "curves.png", "metrics_test.json", "confusion_test.png"):
        assert (trained_run / name).is_file(), name
    config = json.loads((trained_run / "config.json").read_text())
    assert config["classes"] == ["G1", "S", "G2", "M"] and config["dtype"] == "uint16"
    augmentation = config["augmentation"]  # the fixture runs with --shift 0, 3 epochs
    assert augmentation.pop("passes") == pytest.approx(3, abs=0.1)
    assert augmentation == {"on": True, "shift": 0.0, "shift_given": True, "max_shift_px": 0}
    history = json.loads((trained_run / "history.json").read_text())
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    metrics = json.loads((trained_run / "metrics_test.json").read_text())
    assert metrics["macro_f1"] > 0.4  # chance level for 4 classes is about 0.25
    with np.load(trained_run / "split.npz") as split:
        assert not set(split["train"]) & set(split["test"])


def test_resume_continues_from_the_last_epoch(trained_run, tmp_path, jurkat_slice):
    import shutil

    from napari_cellsynth.training.trainers import classifier as train_classifier

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    train_classifier.main(["--data", str(jurkat_slice), "--label-map", "jurkat4", "--width", "16",
                           "--epochs", "4", "--optimizer", "sgd", "--warmup", "0", "--seed", "0", "--out", str(run),
                           "--resume", "--quiet"])
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[:3] == json.loads((trained_run / "history.json").read_text())
    # the same command without --resume would have started over in the folder: refused as a command, in one line
    before = {f.name: f.read_bytes() for f in run.iterdir() if f.is_file()}
    done = subprocess.run([CELLSYNTH, "train", "classifier", "--data", str(jurkat_slice), "--label-map", "jurkat4",
                           "--out", str(run)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "already holds a training run" in done.stderr and "--resume" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert {f.name: f.read_bytes() for f in run.iterdir() if f.is_file()} == before


def test_export_card_and_parity(classifier_bundle, trained_run):
    card = json.loads((classifier_bundle / "card.json").read_text())
    assert card["kind"] == "classifier" and card["classes"] == ["G1", "S", "G2", "M"]
    assert card["channels"] == ["brightfield", "DNA", "darkfield"] and card["input"]["size"] == [40, 40]
    assert card["input"]["dtype"] == "uint16"
    assert card["outputs"] == {"names": ["logits", "features"], "feature_dim": 128}
    assert card["training"]["test_metrics"]["macro_f1"] == json.loads(
        (trained_run / "metrics_test.json").read_text())["macro_f1"]
    assert {"torch", "onnx", "onnxruntime", "numpy"} <= set(card["versions"])
    assert card["export"]["parity"]["logits"]["max_abs"] < 1e-3
    assert len(card["files"]["model.onnx"]["sha256"]) == 64


def test_parity_check_fails_above_tolerance():
    from napari_cellsynth.export.common import parity

    want = {"logits": np.zeros((2, 3))}
    assert parity(want, {"logits": np.full((2, 3), 1e-6)}, atol=1e-4, rtol=0)["logits"]["max_abs"] == 1e-6
    with pytest.raises(AssertionError, match="differs from torch"):
        parity(want, {"logits": np.full((2, 3), 0.1)}, atol=1e-4, rtol=0)


def test_thinning_and_extra_training_crops_touch_only_the_training_split(tmp_path):
    from napari_cellsynth._sample_data import JURKAT_SAMPLE, load_jurkat_sample
    from napari_cellsynth.training.data.labelled_crops import thin_classes
    from napari_cellsynth.training.trainers import classifier as train_classifier

    y = np.repeat([0, 1], [50, 40])
    index = np.arange(90)
    thinned = thin_classes(index, y, ["a", "b"], ["b=0.25"], seed=3)
    assert (y[thinned] == 0).sum() == 50 and (y[thinned] == 1).sum() == 10
    assert thin_classes(index, y, ["a", "b"], ["b=0.25"], seed=3).tolist() == thinned.tolist()
    with pytest.raises(ValueError, match="CLASS=FRACTION"):
        thin_classes(index, y, ["a", "b"], ["c=0.5"], seed=0)

    sample = load_jurkat_sample()
    mitotic = np.isin(sample["labels"], ["Prophase", "Metaphase"])
    np.savez(tmp_path / "extra.npz", images=sample["images"][mitotic][:12], labels=np.array(["M"] * 12))
    run = tmp_path / "run"
    train_classifier.main(["--data", str(JURKAT_SAMPLE), "--label-map", "jurkat4", "--width", "8", "--epochs", "1",
                           "--keep-fraction", "M=0.5", "--extra-train", str(tmp_path / "extra.npz"),
                           "--out", str(run), "--quiet"])
    config = json.loads((run / "config.json").read_text())
    counts = config["counts"]
    assert config["extra_train"][0]["counts"] == {"G1": 0, "S": 0, "G2": 0, "M": 12}
    # the sample's 66 M cells: only the training part is halved, validation and test keep theirs
    held_out = counts["val"]["M"] + counts["test"]["M"]
    assert held_out == 27 and counts["train"]["M"] == round(0.5 * (66 - held_out))


def test_bf16_training_runs_under_autocast_and_learns(tmp_path):
    """``--bf16`` (results §2c): the training steps' forward pass runs in bf16, so its losses differ from the same
    seed's fp32 run, yet both fall; the config records it, and validation stays fp32."""
    from napari_cellsynth._sample_data import JURKAT_SAMPLE
    from napari_cellsynth.training.trainers import classifier as train_classifier

    losses = {}
    for bf16 in (False, True):
        run = tmp_path / f"bf16-{bf16}"
        train_classifier.main(["--data", str(JURKAT_SAMPLE), "--label-map", "jurkat4", "--width", "8", "--steps", "30",
                               "--evaluations", "3", "--threads", "1", "--out", str(run), "--quiet",
                               *(["--bf16"] if bf16 else [])])
        assert json.loads((run / "config.json").read_text())["args"]["bf16"] is bf16
        history = json.loads((run / "history.json").read_text())
        losses[bf16] = [h["train_loss"] for h in history]
        assert losses[bf16][-1] < losses[bf16][0], losses[bf16]
    assert losses[True] != losses[False]


def test_the_mean_pr_auc_is_scikit_learns_macro_average_precision():
    from sklearn.metrics import average_precision_score

    from napari_cellsynth.training.trainers.classifier import mean_pr_auc

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 200)
    probabilities = rng.dirichlet(np.ones(3), 200)
    probabilities[truth == 2, 2] += 0.3  # one class ranked above chance
    want = average_precision_score(np.eye(3)[truth], probabilities, average="macro")
    assert mean_pr_auc(truth, probabilities, ["a", "b", "c"]) == pytest.approx(want)
    # a class the crops do not hold is left out of the mean, not counted as 0
    assert mean_pr_auc(truth[truth < 2], probabilities[truth < 2], ["a", "b", "c"]) == pytest.approx(
        average_precision_score(np.eye(2)[truth[truth < 2]], probabilities[truth < 2, :2], average="macro"))


def test_select_on_pr_auc_keeps_the_checkpoint_with_the_best_validation_pr_auc(tmp_path, monkeypatch):
    """``--select-on pr-auc`` (results §13g): every validation records macro-F1 and mean PR-AUC; the kept checkpoint
    is the best PR-AUC's, not macro-F1's, and the test metrics and the card say which score chose it.  So that the two
    rules must disagree, the second run (the same seed: the same training) scores PR-AUC 1 at a validation that
    macro-F1 did not choose and 0.1 at the others (so the test needs the same seed to train alike twice, as it
    does on one CPU with one thread)."""
    import torch

    from napari_cellsynth._sample_data import JURKAT_SAMPLE
    from napari_cellsynth.export.export_classifier import export_classifier
    from napari_cellsynth.training.trainers import classifier as train_classifier

    def run(name: str, rule: str):
        train_classifier.main(["--data", str(JURKAT_SAMPLE), "--label-map", "jurkat4", "--width", "8", "--steps", "40",
                               "--evaluations", "4", "--batch-size", "16", "--threads", "1", "--select-on", rule,
                               "--out", str(tmp_path / name), "--quiet"])
        return (json.loads((tmp_path / name / "history.json").read_text()),
                json.loads((tmp_path / name / "metrics_test.json").read_text()))

    history, metrics = run("f1", "macro-f1")
    assert len(history) == 4 and all(0 < h["val_pr_auc"] <= 1 and 0 <= h["val_macro_f1"] <= 1 for h in history)
    by_f1 = max(history, key=lambda h: h["val_macro_f1"])["step"]
    assert metrics["selected_on"] == "macro-f1" and metrics["best_step"] == by_f1
    chosen = next(h["step"] for h in history if h["step"] != by_f1)
    calls = iter(h["step"] for h in history)
    monkeypatch.setattr(train_classifier, "mean_pr_auc", lambda *_: 1.0 if next(calls) == chosen else 0.1)
    history, metrics = run("pr", "pr-auc")
    assert [h["val_pr_auc"] for h in history] == [1.0 if h["step"] == chosen else 0.1 for h in history]
    assert metrics["selected_on"] == "pr-auc" and metrics["best_step"] == chosen != by_f1
    assert torch.load(tmp_path / "pr" / "best.pt", weights_only=True)["step"] == chosen
    card = json.loads((export_classifier(tmp_path / "pr", tmp_path / "bundle") / "card.json").read_text())
    assert card["training"]["recipe"]["select_on"] == "pr-auc"
    assert card["training"]["best_val_macro_f1"] == next(h["val_macro_f1"] for h in history if h["step"] == chosen)
    # resuming it under the other rule would keep a checkpoint the other score chose: refused in one line
    with pytest.raises(ValueError, match="kept its checkpoints by validation pr-auc"):
        train_classifier.main(["--data", str(JURKAT_SAMPLE), "--label-map", "jurkat4", "--out", str(tmp_path / "pr"),
                               "--resume"])


def test_a_split_whose_validation_lacks_a_class_is_named_in_one_warning(tmp_path, capsys):
    """A ``--split`` (a study's, a user's) whose validation part holds no cell of a class: the checkpoint rule cannot
    see that class (both scores average over the classes validation holds), so the trainer says so in one line."""
    from napari_cellsynth._sample_data import JURKAT_SAMPLE
    from napari_cellsynth.training.data.labelled_crops import load_labelled, stratified_split
    from napari_cellsynth.training.trainers import classifier as train_classifier

    data = load_labelled(str(JURKAT_SAMPLE), "jurkat4")
    split = stratified_split(data.y, 0)
    m = data.classes.index("M")
    moved = split["val"][data.y[split["val"]] == m]
    assert len(moved)
    np.savez(tmp_path / "split.npz", train=np.concatenate([split["train"], moved]),
             val=split["val"][data.y[split["val"]] != m], test=split["test"])
    for rule in ("macro-f1", "pr-auc"):
        train_classifier.main(["--data", str(JURKAT_SAMPLE), "--label-map", "jurkat4", "--width", "8", "--steps", "2",
                               "--batch-size", "16", "--threads", "1", "--split", str(tmp_path / "split.npz"),
                               "--select-on", rule, "--out", str(tmp_path / rule), "--quiet"])
        warned = [line for line in capsys.readouterr().err.splitlines() if "no validation crops" in line]
        assert warned == [f"warning: class(es) ['M'] have no validation crops, so the checkpoint (--select-on {rule}) "
                          "is chosen without them; give a --split whose 'val' holds some of each class"]
    # a class too small to validate (Anaphase: 4 of the sample's cells) is named once: by the fewer-than-5 line on the
    # trainer's own split, by this one on a given split that leaves it out of validation
    seven = load_labelled(str(JURKAT_SAMPLE), "jurkat7")
    np.savez(tmp_path / "split7.npz", **stratified_split(seven.y, 0))
    for extra, name in (([], "own-split"), (["--split", str(tmp_path / "split7.npz")], "given-split")):
        train_classifier.main(["--data", str(JURKAT_SAMPLE), "--label-map", "jurkat7", "--width", "8", "--steps", "2",
                               "--batch-size", "16", "--threads", "1", *extra, "--out", str(tmp_path / name),
                               "--quiet"])
        err = capsys.readouterr().err
        assert ("['Anaphase'] have fewer than 5 crops" in err) == (not extra)
        assert [line for line in err.splitlines() if "no validation crops" in line] == ([] if not extra else [
            "warning: class(es) ['Anaphase'] have no validation crops, so the checkpoint (--select-on macro-f1) is "
            "chosen without them; give a --split whose 'val' holds some of each class"])


def test_a_config_for_a_function_call_equals_the_command_line():
    """Experiments call trainers with a config built from the trainer's own parser (issue 13)."""
    from napari_cellsynth.training.trainers import classifier as train_classifier
    from napari_cellsynth.training.trainers import ddpm as train_ddpm

    given = train_classifier.config(data="cells.npz", label_map="jurkat4", seed=3, keep_fraction=["M=0.1"],
                                    out="run", resume=True)
    typed = train_classifier.build_parser().parse_args(["--data", "cells.npz", "--label-map", "jurkat4", "--seed", "3",
                                                        "--keep-fraction", "M=0.1", "--out", "run", "--resume"])
    assert vars(given) == vars(typed)
    passed_through = train_classifier.config(["--width", "8"], data="cells.npz", out="run")
    assert passed_through.width == 8 and passed_through.data == "cells.npz"
    assert train_ddpm.config(data="cells.npz", out="run", only_classes=["M"]).only_classes == ["M"]
    with pytest.raises(TypeError, match="no setting named wdith"):
        train_classifier.config(data="cells.npz", out="run", wdith=8)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        train_classifier.config(data="cells.npz", out="run", optimizer="lbfgs")
    with pytest.raises(ValueError, match="--steps must be at least 1"):
        train_classifier.config(data="cells.npz", out="run", steps=0)
    with pytest.raises(TypeError, match="data are required"):
        train_classifier.config(out="run")


def test_fp16_weights_halve_the_bundle_and_keep_the_predictions(trained_run, classifier_bundle, tmp_path):
    """``cellsynth export classifier --weights fp16``: half the file, every prediction on the run's test crops
    checked at export, and the same classes for the shipped sample cells (never trained on)."""
    import subprocess

    from conftest import CELLSYNTH

    from napari_cellsynth._sample_data import load_jurkat_sample
    from napari_cellsynth.core.classify import classify_crops
    from napari_cellsynth.core.jobs import run_to_end
    from napari_cellsynth.core.runtime import OnnxModel

    half = tmp_path / "half"
    done = subprocess.run([CELLSYNTH, "export", "classifier", str(trained_run), "--out", str(half), "--weights", "fp16"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (half / "model.onnx").stat().st_size < 0.6 * (classifier_bundle / "model.onnx").stat().st_size
    export = json.loads((half / "card.json").read_text())["export"]
    assert export["weights"] == "fp16" and export["prediction_agreement"] == 1.0
    images = load_jurkat_sample()["images"]
    full = run_to_end(classify_crops(OnnxModel(classifier_bundle, kind="classifier"), images))
    halved = run_to_end(classify_crops(OnnxModel(half, kind="classifier"), images))
    assert np.mean(full.predicted == halved.predicted) >= 0.99
    assert np.abs(full.probabilities - halved.probabilities).max() < 0.05
