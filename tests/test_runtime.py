import json
import logging

import numpy as np
import pytest

from napari_cellsynth.core.bundle import BundleError
from napari_cellsynth.core.runtime import OnnxModel, choose_providers, make_session, requested_from_env

ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_provider_order_is_tensorrt_cuda_cpu():
    assert choose_providers(["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]) == ALL
    assert choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers(["CUDAExecutionProvider"]) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(ALL, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="unknown execution provider"):
        choose_providers(ALL, ["MagicExecutionProvider"])


def test_env_restricts_providers(monkeypatch):
    monkeypatch.setenv("CELLSYNTH_PROVIDERS", "cuda, cpu")
    assert requested_from_env() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setenv("CELLSYNTH_PROVIDERS", "tpu")
    with pytest.raises(ValueError, match="unknown provider"):
        requested_from_env()


def test_thread_count_from_env_reaches_the_session(classifier_bundle, monkeypatch):
    import onnxruntime as ort

    seen = []

    def factory(path, sess_options, providers):
        seen.append(sess_options.intra_op_num_threads)
        return ort.InferenceSession(path, sess_options=sess_options, providers=providers)

    monkeypatch.setenv("CELLSYNTH_THREADS", "1")
    make_session(classifier_bundle / "model.onnx", ["CPUExecutionProvider"], factory)
    monkeypatch.delenv("CELLSYNTH_THREADS")
    make_session(classifier_bundle / "model.onnx", ["CPUExecutionProvider"], factory)
    assert seen == [1, 0]  # 0: ONNX Runtime picks
    monkeypatch.setenv("CELLSYNTH_THREADS", "two")
    with pytest.raises(ValueError, match="CELLSYNTH_THREADS must be a whole number"):
        make_session(classifier_bundle / "model.onnx", ["CPUExecutionProvider"], factory)


def test_failing_providers_fall_back_with_one_log_line(classifier_bundle, caplog):
    """TensorRT and CUDA 'installed' but failing to start (as on a machine without their libraries)."""
    import onnxruntime as ort

    tried = []

    def factory(path, sess_options, providers):
        tried.append(list(providers))
        if providers[0] != "CPUExecutionProvider":
            raise RuntimeError(f"{providers[0]}: libcudart.so.12: cannot open shared object file")
        return ort.InferenceSession(path, sess_options=sess_options, providers=providers)

    with caplog.at_level(logging.INFO, logger="napari_cellsynth"):
        session, in_use = make_session(classifier_bundle / "model.onnx", ALL, factory)
    assert tried == [ALL, ALL[1:], ALL[2:]]
    assert in_use == ["CPUExecutionProvider"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "runs on CPU" in lines[0] and "TensorRT (" in lines[0] and "libcudart" in lines[0]


def test_bundle_runs_in_batches_and_matches_one_big_batch(classifier_bundle):
    model = OnnxModel(classifier_bundle, kind="classifier")
    batch = np.random.default_rng(0).normal(size=(10, 3, 40, 40)).astype(np.float32)
    whole = model.run({"images": batch})
    parts = [out for _, out in model.run_batches(batch, batch_size=3)]
    np.testing.assert_allclose(np.concatenate([p["logits"] for p in parts]), whole["logits"], rtol=1e-5,
                               atol=1e-5)
    assert whole["features"].shape == (10, model.card.outputs["feature_dim"])


def test_bundle_of_another_kind_or_inconsistent_card_is_refused(classifier_bundle, tmp_path):
    with pytest.raises(BundleError, match="'classifier' bundle, but a 'ddpm' bundle is needed"):
        OnnxModel(classifier_bundle, kind="ddpm")
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(classifier_bundle, copy)
    card = json.loads((copy / "card.json").read_text())
    card["channels"] = ["DNA"]
    card["normalization"].update(mean=[0.0], std=[1.0])
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match=r"ONNX input shape .* does not match its card"):
        OnnxModel(copy)
    (copy / "model.onnx").write_bytes(b"\x00" * 100)
    with pytest.raises(BundleError, match="sha256"):
        OnnxModel(copy)
    with pytest.raises(BundleError, match="ONNX Runtime cannot load"):
        OnnxModel(copy, verify=False)
