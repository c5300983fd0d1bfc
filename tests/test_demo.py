"""The README's main job, headless, with a tiny model (the real demo trains longer)."""

import json

from conftest import JURKAT, require


def test_demo_trains_caches_and_reports(tmp_path, monkeypatch):
    from napari_cellsynth.training import demo

    monkeypatch.setenv("CELLSYNTH_CACHE", str(tmp_path / "cache"))
    args = ["--data", str(require(JURKAT)), "--epochs", "1", "--width", "8", "--headless", "--quiet",
            "--out", str(tmp_path / "report")]
    metrics = demo.main(args)
    assert metrics["n"] == 226  # the shipped sample cells, never trained on
    for name in ("report.html", "results.csv", "metrics.json", "confusion.png", "gallery.png", "curves.png"):
        assert (tmp_path / "report" / name).is_file(), name
    bundle = tmp_path / "cache" / "bundles" / "jurkat-jurkat4-resnet18w8-e1-s0"
    card = json.loads((bundle / "card.json").read_text())
    assert card["training"]["data"]["excluded"] == 226
    stamp = (bundle / "model.onnx").stat().st_mtime_ns
    assert demo.main(args)["macro_f1"] == metrics["macro_f1"]  # second call reuses the cached bundle
    assert (bundle / "model.onnx").stat().st_mtime_ns == stamp
