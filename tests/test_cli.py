import csv
import json

import numpy as np
import pytest
import tifffile

from napari_cellsynth._sample_data import JURKAT_SAMPLE, load_jurkat_sample
from napari_cellsynth.cli import main


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_help_lists_the_commands(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "classify" in out and "info" in out


@pytest.mark.full_data
def test_classify_npz_scores_unseen_sample_cells(classifier_bundle, tmp_path, capsys):
    out = tmp_path / "results.csv"
    assert main(["classify", str(JURKAT_SAMPLE), "--model", str(classifier_bundle), "--out", str(out),
                 "--quiet"]) == 0
    rows = read_csv(out)
    sample = load_jurkat_sample()
    assert len(rows) == len(sample["images"])
    assert set(rows[0]) == {"source", "true_label", "class", "confidence", "p_G1", "p_S", "p_G2", "p_M"}
    probabilities = np.array([[float(r[f"p_{c}"]) for c in ("G1", "S", "G2", "M")] for r in rows])
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-4)
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert metrics["n"] == len(rows) and metrics["macro_f1"] > 0.4
    assert "macro-F1" in capsys.readouterr().out


def test_classify_tiff_stack_and_folder_agree_with_npz(classifier_bundle, tmp_path):
    sample = load_jurkat_sample()
    tifffile.imwrite(tmp_path / "stack.tif", sample["images"][:12])
    folder = tmp_path / "folder"
    folder.mkdir()
    for i in range(12):
        tifffile.imwrite(folder / f"cell{i:02d}.tif", sample["images"][i])
    for source in (tmp_path / "stack.tif", folder):
        assert main(["classify", str(source), "--model", str(classifier_bundle), "--out",
                     str(tmp_path / f"{source.stem}.csv"), "--quiet"]) == 0
    npz = tmp_path / "part.npz"
    np.savez(npz, images=sample["images"][:12])
    main(["classify", str(npz), "--model", str(classifier_bundle), "--out", str(tmp_path / "npz.csv"), "--quiet"])
    classes = [[r["class"] for r in read_csv(tmp_path / f"{n}.csv")] for n in ("stack", "folder", "npz")]
    assert classes[0] == classes[1] == classes[2]


def test_classify_scores_the_crops_whose_labels_it_knows_and_says_which_it_left_out(classifier_bundle, tmp_path,
                                                                                     capsys):
    """A folder per class with one class the bundle has never heard of: the others are scored (a bundle class, and
    an original label its map covers), and one line names what was left out."""
    sample = load_jurkat_sample()
    labels = np.asarray(sample["labels"]).astype(str)
    for name, count in (("G1", 4), ("Prophase", 4), ("Weird", 3)):
        folder = tmp_path / "cells" / name
        folder.mkdir(parents=True)
        pick = np.flatnonzero(labels == name)[:count] if name != "Weird" else np.arange(count)
        for i in pick:
            tifffile.imwrite(folder / f"cell{i:03d}.tif", sample["images"][i])
    assert main(["classify", str(tmp_path / "cells"), "--model", str(classifier_bundle), "--out",
                 str(tmp_path / "calls.csv"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "scored on 8 of 11 crops: 3 labelled Weird" in err and "np.str_" not in err
    scores = json.loads((tmp_path / "calls.metrics.json").read_text())
    assert sum(row["support"] for row in scores["per_class"].values()) == 8


def test_whole_frames_given_as_crops_are_told_to_segment_first(classifier_bundle, tmp_path, capsys):
    """Frames many times a bundle's crop: refused in one line that says to segment them (a bundle of one crop size),
    or classified with that note (crops of mixed sizes, brought to one: ``read_crops``' notes)."""
    from napari_cellsynth.core.datasets import read_crops

    frames = np.repeat(np.repeat(load_jurkat_sample()["images"][:2], 5, axis=-1), 5, axis=-2)  # 200 px "frames"
    tifffile.imwrite(tmp_path / "frames.tif", frames)
    assert main(["classify", str(tmp_path / "frames.tif"), "--model", str(classifier_bundle), "--out",
                 str(tmp_path / "frames.csv"), "--quiet"]) == 2
    assert "whole frames" in capsys.readouterr().err and not (tmp_path / "frames.csv").exists()
    fitted = read_crops(tmp_path / "frames.tif", size=40, fit="resize")
    assert fitted.images.shape[-1] == 40 and any("look like whole frames" in note for note in fitted.notes)


def test_bad_inputs_exit_2_with_a_clear_message(classifier_bundle, tmp_path, capsys):
    np.savez(tmp_path / "small.npz", images=np.zeros((3, 3, 32, 32), np.uint16))
    np.savez(tmp_path / "twoch.npz", images=np.zeros((3, 2, 40, 40), np.uint16))
    nan = np.zeros((3, 3, 40, 40), np.float32)
    nan[1, 0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", images=nan)
    cases = {"small.npz": "32×32 pixels but bundle", "twoch.npz": "2 channel(s)", "nan.npz": "NaN"}
    for name, message in cases.items():
        code = main(["classify", str(tmp_path / name), "--model", str(classifier_bundle), "--out",
                     str(tmp_path / "r.csv"), "--quiet"])
        assert code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()  # nothing half-written
    assert main(["classify", str(tmp_path / "small.npz"), "--model", str(tmp_path), "--out",
                 str(tmp_path / "r.csv")]) == 2
    assert "no card.json" in capsys.readouterr().err
    assert main(["classify", str(tmp_path / "small.npz"), "--model", str(classifier_bundle), "--out",
                 str(tmp_path / "small.npz")]) == 2
    assert "is an input file" in capsys.readouterr().err


def test_info_verifies_and_prints_the_card(classifier_bundle, capsys):
    assert main(["info", str(classifier_bundle)]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "classifier"


def test_classify_objects_of_a_labels_image_as_the_card_says_they_were_cut(classifier_bundle, tmp_path):
    """`cellsynth classify IMAGE --objects LABELS`: the 226 sample cells tiled into a slide, one object each,
    cut as the bundle's training crops were (card input.object_crop: window), agree with the crops themselves."""
    import subprocess

    from conftest import CELLSYNTH
    from napari_cellsynth.core.bundle import read_card
    from napari_cellsynth.core.classify import classify_crops
    from napari_cellsynth.core.jobs import run_to_end
    from napari_cellsynth.core.runtime import OnnxModel
    from napari_cellsynth.training.experiments.shift import cells_on_a_slide

    assert read_card(classifier_bundle).input["object_crop"] == "window"  # one-size crops: fixed windows
    image, labels, cells, _ = cells_on_a_slide(226)
    tifffile.imwrite(tmp_path / "slide.tif", image)
    tifffile.imwrite(tmp_path / "cells.tif", labels)
    out = tmp_path / "objects.csv"
    done = subprocess.run([CELLSYNTH, "classify", str(tmp_path / "slide.tif"), "--objects", str(tmp_path / "cells.tif"),
                           "--model", str(classifier_bundle), "--out", str(out), "--quiet"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "crops cut by window" in done.stderr
    rows = read_csv(out)
    assert [int(r["label"]) for r in rows] == list(range(1, 227))
    # each row's box is its object's own, inside the image, with its centroid and area (batch's columns)
    from skimage.measure import regionprops

    truth = {r.label: r for r in regionprops(labels)}
    for row in rows[:: 25]:
        region = truth[int(row["label"])]
        assert tuple(int(row[k]) for k in ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")) == region.bbox
        assert int(row["area"]) == region.area and float(row["centroid_y"]) == pytest.approx(region.centroid[0], abs=1e-3)
    stack = run_to_end(classify_crops(OnnxModel(classifier_bundle), cells))
    agreement = np.mean([r["class"] == name for r, name in zip(rows, stack.predicted_names)])
    assert agreement >= 0.95, agreement
    resized = subprocess.run([CELLSYNTH, "classify", str(tmp_path / "slide.tif"), "--objects", str(tmp_path / "cells.tif"),
                              "--model", str(classifier_bundle), "--object-crop", "resize", "--out",
                              str(tmp_path / "resized.csv"), "--quiet"], capture_output=True, text=True)
    assert resized.returncode == 0 and "crops cut by resize" in resized.stderr


def test_classify_skips_an_unreadable_crop_of_a_folder_and_lists_it(classifier_bundle, tmp_path, capsys):
    """Issue 36: one broken file among a folder's crops does not stop classification; it is left out, listed in
    OUT.skipped.csv and counted; a folder where nothing can be read is refused in one line."""
    sample = load_jurkat_sample()
    folder = tmp_path / "cells"
    folder.mkdir()
    for i in range(10):
        tifffile.imwrite(folder / f"cell{i:02d}.tif", sample["images"][i])
    (folder / "cell05.tif").write_bytes(b"II*\x00 truncated")
    out = tmp_path / "calls.csv"
    assert main(["classify", str(folder), "--model", str(classifier_bundle), "--out", str(out), "--quiet"]) == 0
    assert [r["source"] for r in read_csv(out)] == [f"cell{i:02d}.tif" for i in range(10) if i != 5]
    assert [r["source"] for r in read_csv(tmp_path / "calls.skipped.csv")] == ["cell05.tif"]
    assert "1 unreadable skipped" in capsys.readouterr().err
    for f in folder.iterdir():
        f.write_bytes(b"not an image")
    assert main(["classify", str(folder), "--model", str(classifier_bundle), "--out", str(tmp_path / "x.csv")]) == 2
    assert "none of its 10 images could be read" in capsys.readouterr().err


def test_cli_options_start_at_the_settings_defaults():
    """Defaults are written once, in the settings dataclasses; the CLI's options (and the widgets' fields, tested with
    the widgets) start there."""
    import dataclasses

    from napari_cellsynth.cli import build_parser
    from napari_cellsynth.core.generate import GenerationSettings
    from napari_cellsynth.core.translate import TranslationSettings

    parser = build_parser()
    generate = vars(parser.parse_args(["generate", "--model", "m", "--class", "M", "--count", "1", "--out", "o"]))
    translate = vars(parser.parse_args(["translate", "--dapi", "d.tif", "--labels", "l.tif", "--model", "m", "--out", "o"]))
    for args, settings, names in ((generate, GenerationSettings, ("guidance", "eta", "seed", "batch_size",
                                                                  "dynamic_percentile", "sampler", "steps")),
                                  (translate, TranslationSettings, ("steps", "eta", "seed", "batch_size"))):
        fields = {f.name: f.default for f in dataclasses.fields(settings)}
        assert {n: args[n] for n in names} == {n: fields[n] for n in names}


def test_progress_in_a_log_is_lines_without_carriage_returns(tmp_path):
    """``cellsynth classify`` run as a command with stderr a file (as under nohup): its progress is plain lines, the
    last one the finished count, and no ``\\r`` garbles the log."""
    import subprocess

    from conftest import CELLSYNTH, REPO

    log = tmp_path / "classify.log"
    with open(log, "w") as stderr:
        done = subprocess.run([CELLSYNTH, "classify", str(JURKAT_SAMPLE), "--model", "zoo:classifier-jurkat4",
                               "--out", str(tmp_path / "calls.csv")], stderr=stderr, stdout=subprocess.DEVNULL,
                              cwd=REPO, timeout=300)
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    n = len(load_jurkat_sample()["images"])
    bars = [line for line in text.splitlines() if line.startswith("classify:")]
    assert "\r" not in text and bars[-1].startswith("classify: 100%") and f"{n}/{n}" in bars[-1]


def test_progress_on_a_terminal_stays_tqdms_bar():
    """On a terminal the bar redraws its line (``\r``); in a file each state is a line of its own."""
    import io

    from napari_cellsynth.core.progress_bars import progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream in (Terminal(), io.StringIO()):
        with progress_bar(total=3, file=stream, mininterval=0) as bar:
            for _ in range(3):
                bar.update()
        drawn = stream.getvalue()
        assert ("\r" in drawn) == isinstance(stream, Terminal) and "3/3" in drawn
    assert drawn.endswith("\n") and len(drawn.splitlines()) >= 2


@pytest.mark.parametrize("command", [["study", "--rare", "M", "--seeds", "0"], ["train", "classifier", "--steps", "1"]])
def test_without_torch_a_training_command_says_what_to_install_in_one_line(command, tmp_path):
    """An install without the [train] extra: the study imports torch only once its options are checked, a trainer at
    its top; both end in one line naming the install, exit 2, no traceback."""
    import subprocess
    import sys

    script = ("import sys\n"
              "sys.modules['torch'] = None  # as if torch were not installed: importing it raises ImportError\n"
              "from napari_cellsynth.cli import main\n"
              "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", script, *command, "--data", str(JURKAT_SAMPLE),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [f"cellsynth {' '.join(command[:2 if command[0] == 'train' else 1])}: "
                                                "error: training needs torch: pip install torch, then pip install "
                                                "'napari-cellsynth[train]' (add [seg] for cellpose)"]
