"""DDPM: a short real training run on Jurkat cells → export → generation (core, CLI, napari)."""

import json
import time

import numpy as np
import pytest
import torch

from napari_cellsynth.cli import main as cli
from napari_cellsynth.core.generate import GenerationSettings, generate
from napari_cellsynth.core.images import affine_coefficients
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.outputs import read_provenance
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.core.samplers import SAMPLERS, timesteps
from napari_cellsynth.training.nets.unet import UNet

from conftest import TINY_DDPM as TINY

@pytest.mark.parametrize("gates", [False, True])
def test_unet_shapes_any_channels(gates):
    net = UNet(5, 3, base=8, channel_mult=(1, 2, 2), attention_gates=gates, image_size=32)
    out = net(torch.zeros(2, 5, 32, 32), torch.tensor([0, 999]), torch.tensor([0, 3]))
    assert out.shape == (2, 5, 32, 32)
    with pytest.raises(ValueError, match="divisible by 4"):
        UNet(1, 2, channel_mult=(1, 2, 2), image_size=42)


def test_training_writes_checkpoint_curves_and_samples(ddpm_run):
    config = json.loads((ddpm_run / "config.json").read_text())
    assert config["normalization"]["type"] == "minmax_range" and config["schedule"]["kind"] == "sigmoid"
    state = torch.load(ddpm_run / "last.pt", weights_only=True)
    assert state["step"] == 40 and state["history"][-1]["step"] == 40
    assert (ddpm_run / "loss.png").is_file() and (ddpm_run / "samples_000040.png").is_file()


def test_fine_tune_on_the_rare_class_with_resume(ddpm_run, jurkat_slice, tmp_path):
    from napari_cellsynth.training.trainers import ddpm as train_ddpm

    run = tmp_path / "M"
    args = ["--data", str(jurkat_slice), "--label-map", "jurkat4", "--timesteps", "100", "--init-from", str(ddpm_run),
            "--only-classes", "M", "--keep-fraction", "M=0.5", "--out", str(run), *TINY]
    train_ddpm.main([*args, "--steps", "10", "--ckpt-every", "10"])
    config = json.loads((run / "config.json").read_text())
    counts = config["train_counts"]
    assert counts["G1"] == counts["S"] == counts["G2"] == 0 and counts["M"] > 0
    assert config["normalization"] == json.loads((ddpm_run / "config.json").read_text())["normalization"]
    train_ddpm.main([*args, "--steps", "20", "--resume"])
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 20
    assert config["schedule"]["prediction"] == "epsilon"  # left unset, fine-tuning keeps the base run's schedule
    with pytest.raises(ValueError, match="fine-tuning must keep it"):
        train_ddpm.main([*args[:-len(TINY)], "--prediction", "v", "--steps", "1", "--out", str(tmp_path / "v"), *TINY])


def test_export_card_and_parity(ddpm_bundle):
    card = json.loads((ddpm_bundle / "card.json").read_text())
    assert card["kind"] == "ddpm" and card["null_class"] == 4 and card["schedule"]["num_timesteps"] == 100
    assert card["outputs"]["prediction"] == "epsilon" and card["export"]["parity"]["eps"]["max_abs"] < 1e-3


def test_generation_is_seeded_and_in_the_data_range(ddpm_bundle):
    model = OnnxModel(ddpm_bundle, kind="ddpm")
    first = run_to_end(generate(model, GenerationSettings("M", 5, "ddim", 10, guidance=2.0, seed=1, batch_size=2)))
    again = run_to_end(generate(model, GenerationSettings("M", 5, "ddim", 10, guidance=2.0, seed=1, batch_size=2)))
    other = run_to_end(generate(model, GenerationSettings("M", 5, "ddim", 10, guidance=2.0, seed=2, batch_size=2)))
    assert first.images.shape == (5, 3, 40, 40) and first.images.dtype == np.uint16
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)
    low, high = model.card.input["value_range"]
    assert first.images.min() >= low and first.images.max() <= high
    assert first.provenance["bundle_sha256"] == model.card.files["model.onnx"]["sha256"]
    for sampler in ("ddpm", "dpm_solver_pp_2m"):
        out = run_to_end(generate(model, GenerationSettings("G1", 2, sampler, 5, seed=0)))
        assert out.images.shape == (2, 3, 40, 40)
    clipped = run_to_end(generate(model, GenerationSettings("M", 5, "ddim", 10, guidance=2.0, seed=1, batch_size=2,
                                                            clip_x0=0.5)))
    assert clipped.provenance["clip_x0"] == 0.5 and first.provenance["clip_x0"] is None
    scale, offset = affine_coefficients(model.card.normalization, 3)  # raw → normalised: within ±0.5
    normalised = clipped.images * scale[None, :, None, None] + offset[None, :, None, None]
    assert np.abs(normalised).max() <= 0.5 + 2 * scale.max()  # ± rounding to the data's integer dtype


@pytest.mark.parametrize("sampler, spacing", [("dpm_solver_pp_2m", "leading"), ("dpm_solver_pp_3m", "linspace"),
                                               ("ddim", "trailing"), ("ddpm", None)])
def test_provenance_records_the_timesteps_that_ran(ddpm_bundle, sampler, spacing):
    """The record states the spacing and steps the sampler really visited (DPM-Solver once ran with
    'trailing' while its record said 'leading')."""
    model = OnnxModel(ddpm_bundle, kind="ddpm")
    seen, run = [], model.run

    def spy(feeds):
        seen.append(int(feeds["t"][0]))
        return run(feeds)

    model.run = spy
    settings = GenerationSettings("M", 2, sampler, 7, spacing=spacing)
    record = run_to_end(generate(model, settings)).provenance
    schedule = model.card.ddpm.schedule
    want = timesteps(schedule.num_timesteps, schedule.num_timesteps if sampler == "ddpm" else 7,
                     "leading" if sampler == "ddpm" else spacing)
    assert seen == want.tolist()
    assert (record["spacing"], record["steps"], record["first_timestep"], record["last_timestep"]) == \
        ("leading" if sampler == "ddpm" else spacing, len(want), want[0], want[-1])
    assert record["network_calls"] == len(want)


@pytest.mark.parametrize("change, message", [({"class_name": "Anaphase"}, "not in bundle"),
                                             ({"steps": 0}, "steps must be between 1"),
                                             ({"count": 0}, "count must be at least 1"),
                                             ({"sampler": "euler"}, "unknown sampler"),
                                             ({"clip_x0": 0.0}, "clip_x0 must be positive"),
                                             ({"sampler": "dpm_solver_pp_2m", "eta": 0.5}, "takes no eta"),
                                             ({"threshold": "soft"}, "unknown threshold"),
                                             ({"threshold": "static", "clip_x0": 3.0}, "either a clip_x0")])
def test_bad_settings_are_named(ddpm_bundle, change, message):
    settings = GenerationSettings(**{"class_name": "M", "count": 2, **change})
    with pytest.raises(ValueError, match=message):
        run_to_end(generate(OnnxModel(ddpm_bundle, kind="ddpm"), settings))


def test_cli_generate_resumes_and_refuses_other_bundles(ddpm_bundle, classifier_bundle, tmp_path, capsys):
    out = tmp_path / "gen"
    args = ["generate", "--model", str(ddpm_bundle), "--class", "M", "--count", "5", "--steps", "5",
            "--batch-size", "2", "--seed", "4", "--out", str(out), "--quiet"]
    assert cli(args) == 0
    files = sorted(out.glob("M_seed4_*.tif"))
    assert len(files) == 5 and read_provenance(files[3])["index"] == 3
    first = {f.name: f.read_bytes() for f in files}
    files[2].unlink()  # batch 1 (images 2 and 3) is incomplete; batches 0 and 2 stay untouched
    time.sleep(1.1)  # a resume in another second: the records' "created" differs, the settings do not
    stamp = files[0].stat().st_mtime_ns
    assert cli(args) == 0
    assert files[0].stat().st_mtime_ns == stamp
    import tifffile

    assert np.array_equal(tifffile.imread(files[2]), tifffile.imread(__import__("io").BytesIO(first[files[2].name])))
    # the same folder with other sampler settings: refused in one line, nothing overwritten, nothing claimed
    kept = {f.name: f.read_bytes() for f in files}
    capsys.readouterr()
    assert cli([*args, "--sampler", "ddim", "--steps", "4"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "'dpm_solver_pp_2m' → 'ddim'" in err and len(err.strip().splitlines()) == 1
    assert {f.name: f.read_bytes() for f in files} == kept
    assert cli([*args[:2], str(classifier_bundle), *args[3:]]) == 2
    assert "'classifier' bundle, but a 'ddpm' or 'gan' bundle is needed" in capsys.readouterr().err


@pytest.mark.napari
def test_generate_widget_adds_a_layer_and_saves_with_provenance(make_napari_viewer, qtbot, ddpm_bundle, tmp_path):
    from napari_cellsynth._widgets.generate import PROVENANCE_KEY, GenerateWidget

    from napari_cellsynth._sample_data import load_jurkat_sample
    from napari_cellsynth.core.bundle import read_card

    viewer = make_napari_viewer()
    viewer.add_image(load_jurkat_sample()["images"], name="sample cells")  # 226 crops, the slider moved to 112
    viewer.dims.set_current_step(0, 112)
    _, widget = viewer.window.add_plugin_dock_widget("napari-cellsynth", "Generate")  # the Plugins menu's way
    assert isinstance(widget, GenerateWidget)
    widget.bundle.value = str(ddpm_bundle)
    assert list(widget.class_name.choices) == ["G1", "S", "G2", "M"]
    counts = read_card(ddpm_bundle).trained.counts
    assert widget.class_name.value == min(counts, key=counts.get)  # the rarest class by default
    assert widget.sampler.value == "dpm_solver_pp_2m" and set(widget.sampler.choices) == set(SAMPLERS)
    fields = widget.settings()  # the fields start at the settings' own defaults
    assert fields == GenerationSettings(fields.class_name, fields.count)
    widget.class_name.value, widget.count.value, widget.steps.value = "M", 3, 5
    widget.threshold.value = "static"
    # interval guidance with a guide bundle (here the generator itself: same data and schedule)
    widget.guidance.value, widget.guidance_from.value, widget.guide.value = 2.0, 0.1, str(ddpm_bundle)
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert widget.last_error is None, widget.last_error
    layer = viewer.layers[-1]
    assert layer.data.shape == (3, 3, 40, 40) and layer.data.dtype == np.uint16
    assert viewer.dims.axis_labels == ("image", "channel", "y", "x")  # the sliders are named
    assert viewer.dims.current_step[0] == 0 and viewer.layers.selection.active is layer  # the new cells in view
    low, high = layer.contrast_limits
    assert layer.data.min() <= low < high <= layer.data.max()  # contrast from the generated cells
    record = layer.metadata[PROVENANCE_KEY]
    assert record["steps"] == 5 and record["sampler"] == "dpm_solver_pp_2m" and record["threshold"]["type"] == "static"
    assert record["guidance"] == 2.0 and record["guidance_interval"] == [0.1, float("inf")]
    assert record["guide"]["bundle"] == read_card(ddpm_bundle).name
    widget.save_folder.value = str(tmp_path / "saved")
    paths = widget.save_selected()
    assert len(paths) == 3 and read_provenance(paths[0])["class"] == "M"


BALANCE_TO = 240  # M grows to 240 cells: 23 generated in the full setting, 218 in cut10


@pytest.mark.slow
@pytest.mark.full_data
def test_experiment_driver_end_to_end_and_resumes(jurkat_slice, tmp_path):
    """Paper 000's experiment at toy scale on real cells: generators, balancing, classifiers, quality, grid."""
    from napari_cellsynth.training.experiments import ddpm as experiment_ddpm

    out = tmp_path / "exp"
    args = ["--data", str(jurkat_slice), "--seeds", "0", "--ddpm-base", "8", "--ddpm-batch", "8", "--ddpm-steps", "3",
            "--finetune-steps", "2", "--epochs", "1", "--width", "8", "--sample-steps", "2",
            "--balance-to", str(BALANCE_TO), "--ddpm-prediction", "v", "--eta", "1", "--clip-x0", "3", "--out", str(out)]
    summary = experiment_ddpm.main(args)
    assert json.loads((out / "full" / "ddpm-bundle" / "card.json").read_text())["outputs"]["prediction"] == "v"
    assert {"full: real only", "full: real + DDPM", "cut10: real only", "cut10: real + DDPM"} <= set(summary)
    for setting in ("full", "cut10"):
        real = json.loads((out / setting / "real" / "seed0" / "config.json").read_text())  # the runner's layout
        with np.load(out / setting / "generated-seed0.npz") as saved:
            assert len(saved["images"]) == BALANCE_TO - real["counts"]["train"]["M"]
            record = json.loads(str(saved["provenance"]))
            assert (record["class"], record["sampler"], record["eta"], record["clip_x0"]) == ("M", "ddim", 1.0, 3.0)
        quality = summary["generator_quality"][setting]
        assert quality["DDPM"]["n"] == BALANCE_TO - real["counts"]["train"]["M"]
        assert np.isfinite(quality["DDPM"]["fid_resnet"])
    quality = summary["generator_quality"]
    assert quality["cut10"]["ssim_reference_count"] < quality["full"]["ssim_reference_count"]
    assert (out / "real_vs_generated.png").is_file() and (out / "summary.md").is_file()
    paired = summary["paired"]["cut10: real + DDPM against real only"]["f1"]  # the seeds paired
    assert paired["before"] == [summary["cut10: real only"]["per_class"]["M"]["f1"]["mean"]]
    assert "one-sided Wilcoxon" in (out / "summary.md").read_text()
    metrics = out / "full" / "real+ddpm" / "seed0" / "metrics_test.json"
    before = metrics.stat().st_mtime_ns
    experiment_ddpm.main([*args, "--skip-report"])  # everything on disk: nothing retrains
    assert metrics.stat().st_mtime_ns == before
    # the UMAP filter on the generated cells: Table 4 counts, kept cells, classifier on real + kept
    from napari_cellsynth.training.experiments import umap_filter as experiment_filter

    filtered = experiment_filter.main([*args, "--classify"])
    for setting in ("full", "cut10"):
        counts = filtered[setting]["counts"]["seed0"]
        with np.load(out / setting / "kept-seed0.npz") as kept:
            assert counts["before"] == summary["generator_quality"][setting]["DDPM"]["n"]
            assert len(kept["images"]) == counts["after"] <= counts["before"] and set(kept["labels"]) <= {"M"}
        assert (out / setting / "umap_filter.png").is_file()
    assert len(filtered["classification"]) == 2 and (out / "filter_summary.md").is_file()
    assert filtered["paired"]["full"]["f1"]["before"] == [summary["full: real + DDPM"]["per_class"]["M"]["f1"]["mean"]]
    with pytest.raises(ValueError, match="choose a larger target"):
        experiment_ddpm.main([*args[:-2], "--balance-to", "10", "--out", str(tmp_path / "exp2")])
    assert not (tmp_path / "exp2" / "ddpm-base").exists()  # refused before any generator or classifier trained
    # generators from elsewhere (--bundles): nothing is trained but the classifiers; a bundle of another cut is refused
    # with the control a user would otherwise pick: as many copies of real M cells as cells generated
    given = experiment_ddpm.main([*args[:-2], "--settings", "full", "--bundles", f"full={out / 'full' / 'ddpm-bundle'}",
                                  "--control", "duplicates", "--skip-report", "--out", str(tmp_path / "exp3")])
    assert {"full: real only", "full: real + DDPM", "full: real + duplicated real M"} <= set(given)
    assert not (tmp_path / "exp3" / "ddpm-base").exists()
    setting_dir = tmp_path / "exp3" / "full"
    from napari_cellsynth.training.data.labelled_crops import load_labelled, stratified_split

    data = load_labelled(str(jurkat_slice), "jurkat4")
    train = stratified_split(data.y, 0)["train"]
    with np.load(setting_dir / "generated-seed0.npz") as made, np.load(setting_dir / "duplicated-seed0.npz") as copies:
        assert len(copies["images"]) == len(made["images"]) and set(copies["labels"]) == {"M"}
        assert set(copies["index"]) <= set(train[data.y[train] == data.classes.index("M")])
        assert np.array_equal(copies["images"], data.crops.images[copies["index"]])
    assert "full: real + DDPM against real + duplicated real M" in given["paired"]
    saved = json.loads((tmp_path / "exp3" / "summary-full.json").read_text())
    assert saved["paired"] == json.loads(json.dumps(given["paired"]))  # the file holds the paired tests too
    with pytest.raises(ValueError, match="trained on another split or cut"):
        experiment_ddpm.main([*args[:-2], "--settings", "full", "--bundles", f"full={out / 'cut10' / 'ddpm-bundle'}",
                              "--out", str(tmp_path / "exp4")])


def test_default_run_is_v_prediction_with_zero_terminal_snr_and_generates(jurkat_slice, tmp_path):
    """What a user gets without schedule options: v-prediction and zero terminal SNR (results §6b), sampled by
    default with DPM-Solver++(2M) at 20 steps, as the CLI and the widgets do."""
    from napari_cellsynth.export.export_ddpm import export_ddpm
    from napari_cellsynth.training.trainers import ddpm as train_ddpm

    run = train_ddpm.main(["--data", str(jurkat_slice), "--label-map", "jurkat4", "--steps", "3", "--timesteps", "100",
                           "--out", str(tmp_path / "v"), *TINY])
    bundle = export_ddpm(run, tmp_path / "v-bundle")
    card = json.loads((bundle / "card.json").read_text())
    assert card["outputs"] == {"names": ["v"], "prediction": "v"} and card["schedule"]["prediction"] == "v"
    assert card["schedule"]["zero_terminal_snr"]
    result = run_to_end(generate(OnnxModel(bundle, kind="ddpm"), GenerationSettings("M", 2)))
    assert result.images.shape == (2, 3, 40, 40) and result.images.dtype == np.uint16
    assert (result.provenance["sampler"], result.provenance["steps"]) == ("dpm_solver_pp_2m", 20)
    with pytest.raises(ValueError, match="needs v-prediction|v-prediction"):
        train_ddpm.main(["--data", str(jurkat_slice), "--label-map", "jurkat4", "--steps", "1", "--prediction",
                         "epsilon", "--zero-terminal-snr", "--out", str(tmp_path / "eps"), *TINY])


def test_reuse_generated_points_every_seed_at_the_first_seeds_cells(tmp_path):
    from types import SimpleNamespace

    from napari_cellsynth.training.experiments.ddpm import generated, generated_path
    from napari_cellsynth.training.experiments.umap_filter import generated_file

    setting = tmp_path / "cut10"
    setting.mkdir()
    first = setting / "generated-seed0.npz"
    np.savez(first, images=np.zeros((2, 3, 4, 4), np.uint16), labels=np.array(["M", "M"]))
    args = SimpleNamespace(reuse_generated=True, seeds=[0, 1, 2])
    # seed 2 gets seed 0's file without generating (no bundle is read, no count is needed)
    assert generated(setting, tmp_path / "no-bundle", {}, args, 2) == first
    assert generated_path(setting, args, "{seed}") == first  # every seed's arm trains on it
    args = SimpleNamespace(reuse_generated=False, seeds=[0, 1, 2])
    assert generated_path(setting, args, "{seed}") == setting / "generated-seed{seed}.npz"
    # the UMAP filter's pass reads off the disk which cells each seed trained on
    assert generated_file(tmp_path, "cut10", 2, 0) == first
    own = setting / "generated-seed1.npz"
    np.savez(own, images=np.zeros((1, 3, 4, 4)))
    assert generated_file(tmp_path, "cut10", 1, 0) == own


def test_snapshots_give_a_kid_curve_over_training_that_resumes(jurkat_slice, classifier_bundle, tmp_path):
    """``--snapshot-every`` keeps fp16 EMA weights; the KID-curve command exports each (the exporter's parity
    check included), samples it and scores it against held-out real cells; a second call finds them done."""
    import subprocess
    import sys

    from napari_cellsynth.export.common import snapshot_steps
    from napari_cellsynth.export.export_ddpm import export_ddpm
    from napari_cellsynth.training.trainers import ddpm as train_ddpm

    run = train_ddpm.main(["--data", str(jurkat_slice), "--label-map", "jurkat4", "--steps", "4", "--timesteps", "100",
                           "--prediction", "v", "--snapshot-every", "2", "--out", str(tmp_path / "run"), *TINY])
    assert snapshot_steps(run) == [2, 4]
    with pytest.raises(FileNotFoundError, match=r"steps \[2, 4\]"):
        export_ddpm(run, tmp_path / "missing", snapshot=3)
    # the run's last weights, exported as a bundle, stand on the curve at the step their card records (as the
    # zoo's GPU-trained generator does beside a CPU replica's snapshots)
    last = export_ddpm(run, tmp_path / "last")
    command = [sys.executable, "-m", "napari_cellsynth.training.experiments.kid_curve", "--run", str(run),
               "--classifier", str(classifier_bundle), "--class", "M", "--count", "8", "--steps", "3",
               "--bundle", str(last), "--floor", "G2", "--out", str(tmp_path / "curve" / "kid_curve.json")]
    (tmp_path / "curve").mkdir()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    curve = json.loads((tmp_path / "curve" / "kid_curve.json").read_text())
    assert [(r["step"], r.get("bundle")) for r in curve["rows"]] == [(2, None), (4, None), (4, str(last))]
    assert all(np.isfinite(r["kid_x1000"]) and np.isfinite(r["fid"]) for r in curve["rows"])
    # the floor: real held-out M cells are closer to the reference M cells than real G2 cells are
    assert curve["floor"]["real test M"]["fid"] < curve["floor"]["real test G2"]["fid"]
    assert (tmp_path / "curve" / "kid_curve.png").stat().st_size > 0
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "step" not in again.stderr  # nothing left to score
    assert json.loads((tmp_path / "curve" / "kid_curve.json").read_text())["rows"] == curve["rows"]
    # a bundle that learnt from other data cannot stand on this run's curve: one line, before any work
    other = subprocess.run([*command[:-6], "--bundle", "zoo:ddpm-jurkat4-full-v", "--out", str(tmp_path / "x.json")],
                           capture_output=True, text=True, timeout=600)
    assert other.returncode != 0 and "Traceback" not in other.stderr
    assert "learnt from" in other.stderr and "same recipe" in other.stderr


@pytest.mark.slow
def test_fine_tune_a_zoo_generator_on_finer_classes(jurkat_slice, tmp_path):
    """A user fine-tunes the shipped 4-class generator on Jurkat's 7 classes, as a command, without its training
    run: the U-Net rebuilt from the bundle's ONNX graph gives the bundle's outputs on real noised cells, each
    mitotic phase starts from the bundle's M, and the run keeps the bundle's shape, normalisation and schedule."""
    import subprocess

    from conftest import CELLSYNTH
    from napari_cellsynth.core.label_maps import NAMED_MAPS
    from napari_cellsynth.core.schedules import NoiseSchedule
    from napari_cellsynth.export.export_ddpm import export_ddpm
    from napari_cellsynth.training.nets.unet import unet_from_net
    from napari_cellsynth.training.trainers.starting_generator import class_rows, load_start, read_start

    zoo = "zoo:ddpm-jurkat4-full-v"
    start = read_start(zoo)
    bundle = OnnxModel(zoo, kind="ddpm")
    with np.load(jurkat_slice) as data:
        crops = data["images"][:6].astype(np.float32)
    low, high = (np.array(bundle.card.normalization[k], np.float32)[:, None, None] for k in ("low", "high"))
    x0 = 2 * (crops - low) / (high - low) - 1
    t = np.array([0, 200, 400, 600, 800, 999])
    xt = NoiseSchedule.from_card(bundle.card.extra["schedule"]).add_noise(
        x0, np.random.default_rng(1).standard_normal(x0.shape).astype(np.float32), t).astype(np.float32)
    cls = np.array([0, 1, 2, 3, 4, 3])
    want = bundle.run({"x": xt, "t": t, "class": cls})["v"]
    rebuilt = unet_from_net(start.net, 3, 40)
    rebuilt.load_state_dict(start.state)
    with torch.no_grad():
        got = rebuilt.eval()(torch.from_numpy(xt), torch.from_numpy(t), torch.from_numpy(cls)).numpy()
    assert np.abs(got - want).max() < 1e-3 * np.abs(want).max()

    jurkat7 = NAMED_MAPS["jurkat7"]
    rows = class_rows(start, list(jurkat7), jurkat7, report=lambda line: None)
    assert rows == [0, 1, 2, 3, 3, 3, 3, 4]  # G1, S, G2, the four phases from M, then the null class
    seven = unet_from_net({**start.net, "num_classes": 7}, 3, 40)
    load_start(seven, start, rows)
    embedding = seven.state_dict()["class_emb.weight"]
    assert torch.equal(embedding[3:7], start.state["class_emb.weight"][[3, 3, 3, 3]])
    assert torch.equal(embedding[7], start.state["class_emb.weight"][4])

    out = tmp_path / "jurkat7-from-zoo"
    train = [CELLSYNTH, "train", "ddpm", "--data", str(jurkat_slice), "--label-map", "jurkat7", "--batch-size", "8",
             "--sample-every", "0", "--ckpt-every", "1", "--quiet", "--out", str(out)]  # 0: no sample grid
    done = subprocess.run([*train, "--init-from", zoo, "--stratify-by", "jurkat4", "--steps", "2"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    # the split of the 4-class start, seen in 7 classes: its training part, and no crop of its test part
    from napari_cellsynth.training.data.labelled_crops import load_labelled, stratified_split

    four = load_labelled(str(jurkat_slice), "jurkat4", report=lambda line: None)
    with np.load(out / "train_index.npz") as saved:
        assert np.array_equal(saved["index"], stratified_split(four.y, 0)["train"])
    before = torch.load(out / "last.pt", weights_only=True)
    resumed = subprocess.run([*train, "--init-from", zoo, "--steps", "3", "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = torch.load(out / "last.pt", weights_only=True)
    assert after["step"] == 3  # went on from step 2: one step of AdamW from there, not from the start's weights
    assert not list(out.glob("samples_*.png"))  # --sample-every 0: no sample grid, not even at the end
    changed = after["model"]["class_emb.weight"] - before["model"]["class_emb.weight"]
    assert 0 < changed.abs().max() < 1e-2
    for extra, message in ((["--resume", "--steps", "4"], f"resume it with --init-from {zoo}"),
                           (["--init-from", zoo, "--base", "64", "--steps", "1", "--resume"], "leave --base unset"),
                           (["--init-from", zoo, "--steps", "1"], "already holds a training run")):  # not over it
        refused = subprocess.run([*train, *extra], capture_output=True, text=True)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["net"] == {**start.net, "num_classes": 7}  # base 32 of the bundle, not the default 64
    assert config["normalization"] == bundle.card.normalization and config["schedule"] == bundle.card.extra["schedule"]
    assert config["init_from"]["kind"] == "bundle" and config["init_from"]["from"].startswith(zoo)
    assert config["split"] == {"seed": 0, "stratify_by": "jurkat4", "classes": ["G1", "S", "G2", "M"]}
    made = export_ddpm(out, tmp_path / "bundle")
    assert json.loads((made / "card.json").read_text())["training"]["data"]["split"] == config["split"]
    cells = run_to_end(generate(OnnxModel(made, kind="ddpm"), GenerationSettings("Anaphase", 2, steps=10))).images
    assert cells.shape == (2, 3, 40, 40) and cells.dtype == np.uint16

    refused = subprocess.run([CELLSYNTH, "train", "ddpm", "--data", str(jurkat_slice), "--label-map", "jurkat7",
                              "--init-from", zoo, "--size", "32", "--steps", "1", "--out", str(tmp_path / "no")],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--size 40" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_class_lr_moves_the_class_embedding_at_its_own_rate_and_nothing_else(jurkat_slice, tmp_path):
    """Issue 33 item 3: `--class-lr` fine-tunes the class conditioning at its own learning rate.  Two one-step
    fine-tunes of the zoo's generator on Jurkat's 7 classes from the same seed, one with `--class-lr 0.01`: the first
    AdamW step moves each weight by about its rate, so the class embedding moves ~50x further with it, and every other
    weight takes the same step in both runs.  The record keeps the rate."""
    import subprocess

    from conftest import CELLSYNTH
    from napari_cellsynth.core.label_maps import NAMED_MAPS
    from napari_cellsynth.training.trainers.starting_generator import class_rows, read_start

    jurkat7, runs = NAMED_MAPS["jurkat7"], {}
    for name, extra in (("plain", []), ("class-lr", ["--class-lr", "0.01"])):
        out = tmp_path / name
        done = subprocess.run([CELLSYNTH, "train", "ddpm", "--data", str(jurkat_slice), "--label-map", "jurkat7",
                               "--init-from", "zoo:ddpm-jurkat4-full-v", "--stratify-by", "jurkat4", "--steps", "1",
                               "--batch-size", "8", "--sample-every", "0", "--ckpt-every", "1", "--quiet",
                               "--out", str(out), *extra], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[name] = (torch.load(out / "last.pt", weights_only=True)["model"], json.loads((out / "config.json").read_text()))
    begin = read_start("zoo:ddpm-jurkat4-full-v")
    initial = begin.state["class_emb.weight"][class_rows(begin, list(jurkat7), jurkat7, report=lambda line: None)]
    plain, fast = ((state["class_emb.weight"] - initial).abs().max().item() for state, _ in runs.values())
    assert 0 < plain < 1e-3 and 5e-3 < fast < 2e-2, (plain, fast)
    for key, value in runs["plain"][0].items():
        if key != "class_emb.weight":
            assert torch.allclose(value, runs["class-lr"][0][key], atol=1e-6), key
    assert runs["class-lr"][1]["args"]["class_lr"] == 0.01 and runs["plain"][1]["args"]["class_lr"] is None
    # resumed without the option, the run keeps its rate (and its optimizer's two parameter groups)
    resumed = subprocess.run([CELLSYNTH, "train", "ddpm", "--data", str(jurkat_slice), "--label-map", "jurkat7",
                              "--init-from", "zoo:ddpm-jurkat4-full-v", "--steps", "2", "--batch-size", "8",
                              "--sample-every", "0", "--quiet", "--resume", "--out", str(tmp_path / "class-lr")],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((tmp_path / "class-lr" / "config.json").read_text())["args"]["class_lr"] == 0.01
    assert torch.load(tmp_path / "class-lr" / "last.pt", weights_only=True)["step"] == 2


def test_balanced_sampling_draws_every_finer_class_equally_often(jurkat_slice, tmp_path):
    """`cellsynth train ddpm --sampling balanced`: a fine-tune on Jurkat's mitotic phases (a few Anaphase and
    Telophase cells among many Prophase ones) draws each phase about equally often; the record keeps it, and a
    resume without the option keeps it too."""
    import subprocess

    from conftest import CELLSYNTH
    from napari_cellsynth.training.data.labelled_crops import CropBatches, load_labelled, sampling_weights

    data = load_labelled(str(jurkat_slice), "jurkat7", report=lambda line: None)
    phases = np.flatnonzero(data.y >= 3)
    y = data.y[phases]
    assert np.bincount(y)[3:].max() > 3 * np.bincount(y)[3:].min()  # Prophase outnumbers the rarest phase
    batches = CropBatches(data.crops.images[phases], y, {"type": "none"}, 64, augment=False, seed=0,
                          weights=sampling_weights(y, "balanced"))
    drawn = []  # 2,560 draws, over as many passes as that takes (the 226 sample cells of a clone without the data
    while sum(map(len, drawn)) < 40 * 64:  # hold fewer than 100 mitotic ones: a pass is a batch or two)
        drawn += [b.numpy() for _, b in batches]
    drawn = np.concatenate(drawn)
    shares = np.bincount(drawn, minlength=7)[3:] / len(drawn)
    assert np.all(np.abs(shares - 0.25) < 0.05), shares
    assert sampling_weights(y, "shuffle") is None
    out = tmp_path / "balanced"
    command = [CELLSYNTH, "train", "ddpm", "--data", str(jurkat_slice), "--label-map", "jurkat7", "--init-from",
               "zoo:ddpm-jurkat4-full-v", "--only-classes", "Prophase", "Metaphase", "Anaphase", "Telophase",
               "--batch-size", "8", "--sample-every", "0", "--quiet", "--out", str(out)]
    for extra in (["--steps", "1", "--sampling", "balanced"], ["--steps", "2", "--resume"]):
        done = subprocess.run([*command, *extra], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads((out / "config.json").read_text())["args"]["sampling"] == "balanced"


def test_finer_class_fidelity_script_measures_what_the_class_changes(jurkat_slice, tmp_path):
    """scripts/finer_class_fidelity.py as a command: cells of two classes from the same noise, judged by a classifier
    that made none of them; the class effect is the share of the noise's effect that the class has (G1 and M of the
    zoo's generator differ: above 0); memorisation is each cell's SSIM-max to the training cells of its class."""
    import subprocess
    import sys

    from conftest import REPO

    np.savez(tmp_path / "train_index.npz", index=np.arange(0, 400, 2))
    done = subprocess.run([sys.executable, "scripts/finer_class_fidelity.py", "--bundle", "zoo=zoo:ddpm-jurkat4-full-v",
                           "--classes", "G1", "M", "--count", "4", "--judge", "zoo:classifier-jurkat4",
                           "--data", str(jurkat_slice), "--label-map", "jurkat4",
                           "--train-index", str(tmp_path / "train_index.npz"), "--out", str(tmp_path / "f.json")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "f.json").read_text())["bundles"]["zoo"]
    assert 0.05 < result["class_effect"] < 2
    assert set(result["calls"]) == {"G1", "M"} and abs(sum(result["calls"]["M"].values()) - 1) < 1e-9
    assert all(0 < m["ssim_max"] <= 1 and 0 < m["ssim_max_unseen_real"] <= 1 for m in result["memorisation"].values())
    assert "| zoo | M |" in done.stdout


def test_interval_guidance_and_autoguidance_from_the_command(ddpm_bundle, tmp_path, capsys):
    """`cellsynth generate --guidance-interval` guides only the steps inside the noise-level interval, and `--guide`
    takes a second bundle's conditional prediction as the reference; the record states both and the true count of
    network calls.  A guide of other data, or an interval at guidance 1, is refused in one line."""
    model = OnnxModel(ddpm_bundle, kind="ddpm")
    sigmas = model.card.ddpm.schedule.sigmas
    settings = GenerationSettings("M", 3, "dpm_solver_pp_2m", 8, guidance=2.0, seed=1,
                                  guidance_interval=(float(sigmas[30]), float(sigmas[70])))
    ts = settings.timesteps(model)
    inside = [int(t) for t in ts if 30 < t <= 70]
    assert 0 < len(inside) < len(ts)
    batches, run = [], model.run
    model.run = lambda feeds: (batches.append(len(feeds["x"])), run(feeds))[1]
    images = run_to_end(generate(model, settings))
    assert batches == [6 if 30 < t <= 70 else 3 for t in ts]  # a guided step runs a doubled batch
    assert images.provenance["network_calls"] == len(ts) + len(inside)
    plain = run_to_end(generate(OnnxModel(ddpm_bundle, kind="ddpm"), GenerationSettings("M", 3, steps=8, seed=1)))
    assert not np.array_equal(images.images, plain.images)

    out = tmp_path / "auto"
    args = ["generate", "--model", str(ddpm_bundle), "--class", "M", "--count", "2", "--steps", "4", "--guidance",
            "1.5", "--guidance-interval", "0.1", "inf", "--guide", str(ddpm_bundle), "--out", str(out), "--quiet"]
    assert cli(args) == 0
    record = read_provenance(sorted(out.glob("M_seed0_*.tif"))[0])
    assert record["guidance_interval"] == [0.1, float("inf")] and record["guidance"] == 1.5
    assert record["guide"]["bundle"] == model.card.name and record["guide"]["bundle_sha256"] == model.card.model_sha256
    capsys.readouterr()
    for extra, message in ((["--guide", "zoo:ddpm-jurkat4-cut10-v", "--guidance", "2"], "has another"),
                           (["--guidance-interval", "0.3", "5"], "needs a guidance scale other than 1"),
                           (["--guidance", "2", "--guidance-interval", "5", "0.3"], "0 ≤ low < high")):
        code = cli(["generate", "--model", str(ddpm_bundle), "--class", "M", "--count", "2", "--steps", "4",
                    "--out", str(tmp_path / "refused"), "--quiet", *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_a_reexported_guide_is_loaded_again(ddpm_run, tmp_path):
    """The guide is cached per process, but not past a re-export into the same folder (its card and sha change)."""
    import shutil

    from napari_cellsynth.core.generate import guide_model
    from napari_cellsynth.export.export_ddpm import export_ddpm

    folder = export_ddpm(ddpm_run, tmp_path / "guide")
    first = guide_model(str(folder))
    assert guide_model(str(folder)) is first
    shutil.rmtree(folder)
    export_ddpm(ddpm_run, tmp_path / "guide", name="renamed-guide")
    again = guide_model(str(folder))
    assert again is not first and again.card.name == "renamed-guide"
