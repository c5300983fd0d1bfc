"""Cellpose training that resumes: the trainer's epoch loop is Cellpose's ``train_seg`` (equal weights, learning-rate
annealing included), and ``cellsynth train cellpose`` killed mid-run and given ``--resume`` ends at the weights an
uninterrupted run reaches.  Real data: the plugin's sample metaphase (V260554) and M-FISH planes."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import tifffile
import torch
from conftest import CELLSYNTH, REPO, SHARED_DATA, require

from napari_cellsynth.training.trainers.cellpose_epochs import (EpochPlan, cellpose_learning_rates, read_checkpoint,
                                                                train_epochs)


@pytest.fixture(scope="module")
def metaphase():
    """The sample metaphase's DAPI plane and its chromosomes (instances from the karyotype image)."""
    from napari_cellsynth._sample_data import MFISH_SAMPLE
    from napari_cellsynth.training.data.chromosome_masks import chromosome_instances

    planes = tifffile.imread(MFISH_SAMPLE)
    return planes[0], chromosome_instances(tifffile.imread(MFISH_SAMPLE.with_name(MFISH_SAMPLE.stem + "_K.tif")))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_network():
    from cellpose.resnet_torch import CPnet

    torch.manual_seed(0)
    return CPnet([2, 16, 32, 64, 128], 3, sz=3, mkldnn=False, max_pool=True)


def same_weights(a, b) -> bool:
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("epochs, per_epoch, bsize", [(3, 8, 64), (301, 1, 32)])
def test_the_epochs_are_cellposes_train_seg(metaphase, one_thread, tmp_path, epochs, per_epoch, bsize):
    """Same start, same data: the weights equal ``train_seg``'s bit for bit, over a short run and over one of 301
    epochs, whose learning rate anneals over its last 100 (the schedule's second branch)."""
    from napari_cellsynth.core.numba_cached import import_cellpose

    import_cellpose()
    from cellpose import train

    image, chromosomes = metaphase
    theirs, ours = small_network(), small_network()
    train.train_seg(theirs, train_data=[image], train_labels=[chromosomes], channels=[0, 0], n_epochs=epochs,
                    bsize=bsize, batch_size=8, learning_rate=0.005, save_path=str(tmp_path), model_name="m",
                    min_train_masks=1, nimg_per_epoch=per_epoch)
    done = list(train_epochs(ours, [image], [chromosomes], EpochPlan(epochs, per_epoch, bsize, 0.005), tmp_path,
                             checkpoint_every=1000))
    assert [d[0] for d in done] == list(range(1, epochs + 1))
    assert same_weights(theirs, ours)
    assert read_checkpoint(tmp_path)["epoch"] == epochs  # the last epoch is always checkpointed


def test_the_learning_rate_warms_up_and_anneals_as_cellposes():
    assert np.allclose(cellpose_learning_rates(0.01, 50)[:10], np.linspace(0, 0.01, 10))
    assert cellpose_learning_rates(0.01, 100).min() == 0 and cellpose_learning_rates(0.01, 100)[-1] == 0.01
    for epochs, tail in [(150, 50), (400, 100)]:
        rates = cellpose_learning_rates(0.01, epochs)
        assert len(rates) == epochs and rates[-tail - 1] == 0.01
        assert np.isclose(rates[-1], 0.01 / 2 ** 10) and np.all(np.diff(rates[-tail:]) <= 0)


def test_going_on_from_a_checkpoint_reaches_the_same_weights(metaphase, one_thread, tmp_path):
    image, chromosomes = metaphase
    plan = EpochPlan(4, 8, 64, 0.005)
    whole, stopped = small_network(), small_network()
    list(train_epochs(whole, [image], [chromosomes], plan, tmp_path / "whole"))
    for done, _, _ in train_epochs(stopped, [image], [chromosomes], plan, tmp_path / "stopped", checkpoint_every=1):
        if done == 2:
            break
    state = read_checkpoint(tmp_path / "stopped")
    assert state["epoch"] == 2 and len(state["losses"]) == 2
    again = small_network()  # a new process: nothing but the checkpoint carries over
    assert [d[0] for d in train_epochs(again, [image], [chromosomes], plan, tmp_path / "stopped", start=state)] == [3, 4]
    assert same_weights(whole, again)
    assert read_checkpoint(tmp_path / "stopped")["losses"] == read_checkpoint(tmp_path / "whole")["losses"]


@pytest.mark.slow
def test_a_killed_training_resumes_where_it_stopped(tmp_path):
    """``cellsynth train cellpose`` run as a command, killed after its second checkpoint, then run again with
    ``--resume``: it goes on from the checkpoint (not from the start) and its model file equals that of the same
    command run without a kill; the record keeps the whole run's time.  Without ``--resume``, or with another option,
    the folder is refused in one line before anything is read."""
    mfish = str(require(SHARED_DATA / "mfish"))
    command = [CELLSYNTH, "train", "cellpose", "--root", mfish, "--limit", "1",
               "--test-slides", "V26", "--epochs", "8", "--images-per-epoch", "8", "--bsize", "64",
               "--init-from", "zoo:cellpose-chromosomes", "--checkpoint-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = subprocess.run([*command, "--out", str(tmp_path / "whole")], capture_output=True, text=True, env=env,
                           timeout=600, cwd=REPO)
    assert whole.returncode == 0, whole.stderr[-2000:]
    run = tmp_path / "killed"
    child = subprocess.Popen([*command, "--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=env, cwd=REPO)
    deadline = time.time() + 600
    while time.time() < deadline and child.poll() is None:
        state = read_checkpoint(run) if (run / "last.pt").is_file() else None
        if state is not None and state["epoch"] >= 2:
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    child.wait(timeout=60)
    stopped_at = read_checkpoint(run)["epoch"]
    assert child.returncode == -signal.SIGKILL and 2 <= stopped_at < 8 and not (run / "report.json").exists()

    refused = subprocess.run([*command, "--out", str(run)], capture_output=True, text=True, env=env, cwd=REPO)
    assert refused.returncode != 0 and "--resume" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    other = subprocess.run([*command[:-1], "2", "--out", str(run), "--resume", "--epochs", "9"], capture_output=True,
                           text=True, env=env, cwd=REPO)
    assert other.returncode != 0 and "--epochs 8" in other.stderr and "Traceback" not in other.stderr
    assert read_checkpoint(run)["epoch"] == stopped_at  # refusals touched nothing

    resumed = subprocess.run([*command, "--out", str(run), "--resume"], capture_output=True, text=True, env=env,
                             timeout=600, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming {run} at epoch {stopped_at} of 8" in resumed.stderr
    assert (run / "models" / "chromosomes").read_bytes() == (tmp_path / "whole" / "models" / "chromosomes").read_bytes()
    report, reference = (json.loads((folder / "report.json").read_text()) for folder in (run, tmp_path / "whole"))
    assert report["final_train_loss"] == reference["final_train_loss"]
    assert report["test"]["per_image"] == reference["test"]["per_image"]
    assert report["args"]["resume"] is True and report["train_seconds"] > 0


def test_pseudo_labels_come_from_unlabelled_metaphases_off_the_held_out_slides(tmp_path):
    """``--pseudo-labels-from`` trains on the root's unlabelled (EX) metaphases with the zoo model's masks, records
    which and how many objects each gave, and never takes one of a held-out slide: holding out every slide that has
    unlabelled metaphases is refused in one line."""
    from napari_cellsynth.training.data.chromosome_masks import pseudo_labels, unlabelled_metaphases

    mfish = str(require(SHARED_DATA / "mfish"))
    kept = unlabelled_metaphases(mfish, ["A23"])
    assert kept and all(m.karyotype is None and m.slide != "A23" for m in kept)
    command = [CELLSYNTH, "train", "cellpose", "--root", mfish, "--limit", "1", "--epochs", "1",
               "--images-per-epoch", "2", "--bsize", "64", "--pseudo-labels-from", "zoo:cellpose-chromosomes",
               "--init-from", "zoo:cellpose-chromosomes"]  # a trained start: its threshold grid takes seconds
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ex_slides = sorted({m.slide for m in unlabelled_metaphases(mfish, [])})
    refused = subprocess.run([*command, "--test-slides", *ex_slides, "--out", str(tmp_path / "none")],
                             capture_output=True, text=True, env=env, cwd=REPO)
    assert refused.returncode != 0 and "no unlabelled metaphase" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "none" / "report.json").exists()

    done = subprocess.run([*command, "--test-slides", "V26", "--out", str(tmp_path / "run")], capture_output=True,
                          text=True, env=env, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    objects = report["pseudo_labelled"]["objects"]
    assert list(objects) == [unlabelled_metaphases(mfish, ["V26"])[0].name]  # --limit 1: the first
    assert all(n > 20 for n in objects.values())  # a metaphase holds about 46 chromosomes
    assert report["pseudo_labelled"]["model"]["name"] == "cellpose-chromosomes"
    assert report["args"]["pseudo_labels_from"] == "zoo:cellpose-chromosomes" and report["train_metaphases"] == 1

    # a model file of the zoo's narrower widths labels too, and starts a training (its widths read from the file)
    from napari_cellsynth.training.trainers.cellpose import cellpose_model, starting_network

    model_file = str(tmp_path / "run" / "models" / "chromosomes")
    assert starting_network(model_file)[1] == report["nbase"] == [16, 32, 64, 128]
    first = unlabelled_metaphases(mfish, ["V26"], 1)
    assert pseudo_labels(cellpose_model(model_file), first)[0].max() > 20
    not_a_model = tmp_path / "notes.txt"
    not_a_model.write_text("not weights")
    with pytest.raises(ValueError, match="is not a Cellpose model file"):
        cellpose_model(str(not_a_model))


def test_a_runs_options_keep_names_and_resolve_folders(tmp_path, monkeypatch):
    """What a resumed run is compared with: folders as absolute paths, zoo and built-in model names as given (a
    resume from another working directory must not turn ``cyto3`` into ``OTHER/cyto3``)."""
    from napari_cellsynth.training.trainers.cellpose import config, run_options

    monkeypatch.chdir(tmp_path)
    options = run_options(config(root="mfish", out="run", pseudo_labels_from="cyto3", init_from="runs/a/model"))
    assert options["pseudo_labels_from"] == "cyto3" and options["root"] == str(tmp_path / "mfish")
    assert options["init_from"] == str(tmp_path / "runs" / "a" / "model")
    assert run_options(config(root="m", out="r", pseudo_labels_from="zoo:x"))["pseudo_labels_from"] == "zoo:x"
