"""The trainers' one loop (issue 13): cadence, history, resume start, time budget, validation, early stop."""

import torch

from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.training.trainers.loop import Every, endless, training_loop


def test_actions_run_on_their_cadence_and_at_the_last_step():
    calls, history = [], []
    every = {"checkpoint": Every(4, lambda s: calls.append(("checkpoint", s))),
             "samples": Every(6, lambda s: calls.append(("samples", s)))}
    progress = list(training_loop(lambda step: {"loss": torch.tensor(float(step))}, 0, 10, history, every,
                                  log_every=5, quiet=True))
    assert progress[-1] == (10, 10) and len(progress) == 10
    assert calls == [("checkpoint", 4), ("samples", 6), ("checkpoint", 8), ("checkpoint", 10), ("samples", 10)]
    assert [h["step"] for h in history] == [5, 10]
    assert history[0]["loss"] == 2.0 and history[1]["loss"] == 7.0  # means of steps 0–4 and 5–9


def test_a_resumed_run_starts_where_it_stopped_and_keeps_its_history():
    history = [{"step": 50, "loss": 1.0}]
    steps = []
    run_to_end(training_loop(lambda step: steps.append(step) or {"loss": 0.5}, 50, 53, history, {}, quiet=True))
    assert steps == [50, 51, 52] and [h["step"] for h in history] == [50, 53]


def test_the_time_budget_makes_the_current_step_the_last():
    saved = []
    done = run_to_end(training_loop(lambda step: {"loss": 1.0}, 0, 10**9, [], {"checkpoint": Every(10**6, saved.append)},
                                    max_minutes=1e-9, quiet=True))
    assert saved == [1] and done[-1]["step"] == 1  # stopped after one step, checkpointed there


def test_endless_goes_on_past_an_epoch():
    stream = endless([1, 2, 3])
    assert [next(stream) for _ in range(7)] == [1, 2, 3, 1, 2, 3, 1]


def test_extra_log_and_early_stop():
    """The classifier's use: a validation per entry (extra_log) and early stopping (stop)."""
    history, validations = [], []

    def validate(step):
        validations.append(step)
        return {"val": step * 10}

    progress = list(training_loop(lambda step: {"loss": 1.0}, 0, 100, history, {}, log_every=10,
                                  extra_log=validate, stop=lambda: len(validations) == 3, quiet=True))
    assert validations == [10, 20, 30] and progress[-1] == (30, 100)  # stopped after the third validation
    assert [h["val"] for h in history] == [100, 200, 300]
    assert all(0 <= h["seconds"] < 5 for h in history)  # seconds per entry, not since the start
