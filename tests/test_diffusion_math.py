"""Schedules and samplers against a noise model whose answer is known in closed form.

For data x0 ~ N(μ, s²) per pixel, x_t = sqrt(ᾱ) x0 + sqrt(1-ᾱ) ε has the optimal noise predictor
E[ε | x_t] = sqrt(1-ᾱ) (x_t - sqrt(ᾱ) μ) / (ᾱ s² + 1 - ᾱ); a correct sampler driven by it turns
N(0, 1) noise into N(μ, s²) samples.
"""

import numpy as np
import pytest

from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.samplers import ddim, ddpm, dpm_solver_pp_2m, guided, timesteps
from napari_cellsynth.core.schedules import BridgeSchedule, NoiseSchedule

MU, S = 0.7, 0.3


def gaussian_eps(schedule):
    def model_fn(x, t):
        ab = schedule.alpha_bar[t].reshape(-1, *([1] * (x.ndim - 1)))
        return (np.sqrt(1 - ab) * (x - np.sqrt(ab) * MU) / (ab * S ** 2 + 1 - ab)).astype(np.float32)
    return model_fn


@pytest.mark.parametrize("kind, params", [("linear", {}), ("cosine", {}), ("sigmoid", {"start": -3, "end": 3, "tau": 1.0}),
                                          ("sigmoid", {"start": 0, "end": 3, "tau": 0.7})])
def test_schedules_decay_monotonically_from_clean_to_noise(kind, params):
    schedule = NoiseSchedule(kind, 1000, params)
    ab = schedule.alpha_bar
    assert ab[0] > 0.99 and ab[-1] < 0.01
    assert np.all(np.diff(ab) < 0) and np.all((schedule.betas > 0) & (schedule.betas <= 0.999))
    assert NoiseSchedule.from_card(schedule.to_card()).alpha_bar.tolist() == ab.tolist()


def test_schedule_errors():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        NoiseSchedule("quadratic", 1000)
    with pytest.raises(ValueError, match="end > start"):
        NoiseSchedule("sigmoid", 1000, {"start": 3, "end": -3})


def test_bridge_marginal_variance():
    bridge = BridgeSchedule(1000, s=1.0)
    assert bridge.m[0] == 0 and bridge.m[-1] == 1 and bridge.m[500] == 0.5
    assert bridge.delta[0] == bridge.delta[-1] == 0 and bridge.delta[500] == pytest.approx(0.5)
    assert BridgeSchedule(1000, s=0.5).delta.max() == pytest.approx(0.25)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_timesteps(spacing):
    ts = timesteps(1000, 50, spacing)
    assert len(ts) == 50 and np.all(np.diff(ts) < 0) and ts[0] <= 999
    # leading and linspace end on the clean step; trailing starts on the noisiest one
    assert ts[-1] == 0 if spacing != "trailing" else (ts[0] == 999 and ts[-1] == 19)
    with pytest.raises(ValueError, match="steps must be between 1"):
        timesteps(1000, 0)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "ddim_eta1", "dpm"])
def test_samplers_reach_the_known_distribution(name):
    schedule = NoiseSchedule("cosine", 1000)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((4000, 1, 2, 2)).astype(np.float32)
    job = {"ddpm": lambda: ddpm(gaussian_eps(schedule), noise, schedule, rng),
           "ddim": lambda: ddim(gaussian_eps(schedule), noise, schedule, 50, rng),
           "ddim_eta1": lambda: ddim(gaussian_eps(schedule), noise, schedule, 100, rng, eta=1.0),
           "dpm": lambda: dpm_solver_pp_2m(gaussian_eps(schedule), noise, schedule, 20)}[name]()
    samples = run_to_end(job)
    assert samples.shape == noise.shape and samples.dtype == np.float32
    assert samples.mean() == pytest.approx(MU, abs=0.02)
    assert samples.std() == pytest.approx(S, rel=0.06)


def test_deterministic_samplers_are_reproducible_and_seeded_ones_follow_the_seed():
    schedule = NoiseSchedule("linear", 200)
    noise = np.random.default_rng(1).standard_normal((8, 1, 4, 4)).astype(np.float32)
    a = run_to_end(ddim(gaussian_eps(schedule), noise, schedule, 20, np.random.default_rng(5)))
    b = run_to_end(ddim(gaussian_eps(schedule), noise, schedule, 20, np.random.default_rng(6)))
    np.testing.assert_array_equal(a, b)  # η = 0 ignores the generator
    c = run_to_end(ddpm(gaussian_eps(schedule), noise, schedule, np.random.default_rng(5)))
    d = run_to_end(ddpm(gaussian_eps(schedule), noise, schedule, np.random.default_rng(5)))
    e = run_to_end(ddpm(gaussian_eps(schedule), noise, schedule, np.random.default_rng(6)))
    np.testing.assert_array_equal(c, d)
    assert not np.array_equal(c, e)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpm"])
def test_clip_x0_bounds_a_diverging_prediction(name):
    """An ε-network that is wrong by a constant 1 blows x₀ up near t = T (ε error / sqrt(ᾱ)); clipping every x₀
    estimate keeps the samples within ±clip, and leaves a correct network's answer as it was."""
    schedule = NoiseSchedule("cosine", 1000)
    noise = np.random.default_rng(0).standard_normal((500, 1, 2, 2)).astype(np.float32)

    def wrong(x, t):
        return gaussian_eps(schedule)(x, t) + 1

    def sample(model_fn, clip):
        rng = np.random.default_rng(3)
        return run_to_end({"ddpm": lambda: ddpm(model_fn, noise, schedule, rng, clip_x0=clip),
                           "ddim": lambda: ddim(model_fn, noise, schedule, 50, rng, clip_x0=clip),
                           "dpm": lambda: dpm_solver_pp_2m(model_fn, noise, schedule, 20, spacing="trailing",
                                                           clip_x0=clip)}[name]())

    assert np.abs(sample(wrong, None)).max() > 1.05
    assert np.abs(sample(wrong, 1.0)).max() <= 1.0 + 1e-5
    right = sample(gaussian_eps(schedule), 3.0)  # the true x₀ (N(0.7, 0.3²)) never reaches ±3
    assert right.mean() == pytest.approx(MU, abs=0.03) and right.std() == pytest.approx(S, rel=0.1)


def test_progress_counts_network_calls():
    schedule = NoiseSchedule("linear", 100)
    job = dpm_solver_pp_2m(gaussian_eps(schedule), np.zeros((1, 1, 2, 2), np.float32), schedule, 10)
    progress = []
    while True:
        try:
            progress.append(next(job))
        except StopIteration:
            break
    assert progress == [(i, 10) for i in range(1, 11)]


def test_guidance_mixes_conditional_and_unconditional_predictions():
    def net(x, t, c):
        return np.broadcast_to(c.reshape(-1, 1).astype(np.float32), x.shape).copy()

    x, t = np.zeros((3, 2)), np.zeros(3, np.int64)
    assert np.allclose(guided(net, [2, 2, 2], null_class=0, scale=1.0)(x, t), 2)
    assert np.allclose(guided(net, [2, 2, 2], null_class=0, scale=0.0)(x, t), 0)
    assert np.allclose(guided(net, [2, 2, 2], null_class=0, scale=3.0)(x, t), 6)


def test_bridge_forward_marginals_at_0_half_and_T():
    from napari_cellsynth.core.schedules import BridgeSchedule

    bridge = BridgeSchedule(1000, s=1.0)
    rng = np.random.default_rng(0)
    x0, y = np.full((200_000, 1), 2.0), np.full((200_000, 1), -1.0)
    for t, mean, var in [(0, 2.0, 0.0), (500, 0.5, 0.5), (1000, -1.0, 0.0)]:
        xt = bridge.forward(x0, y, np.full(len(x0), t), rng.standard_normal(x0.shape))
        assert xt.mean() == pytest.approx(mean, abs=0.01) and xt.var() == pytest.approx(var, abs=0.01)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_bridge_sampler_reaches_the_known_distribution(eta):
    """x0 ~ N(μ, s²) independent of y: the oracle prediction E[x_t - x_0 | x_t] is linear in x_t."""
    from napari_cellsynth.core.samplers import bridge
    from napari_cellsynth.core.schedules import BridgeSchedule

    schedule = BridgeSchedule(1000, s=1.0)
    y = np.full((20_000, 1, 2, 2), -1.0, np.float32)

    def oracle(x, t):
        m = schedule.m[t].reshape(-1, 1, 1, 1)
        d = schedule.delta[t].reshape(-1, 1, 1, 1)
        denominator = (1 - m) ** 2 * S ** 2 + d  # 0 at t = T, where x_T = y says nothing about x_0
        gain = np.divide((1 - m) * S ** 2, denominator, out=np.zeros_like(denominator), where=denominator > 0)
        mean_x0 = MU + gain * (x - (1 - m) * MU - m * (-1.0))  # y = -1 everywhere
        return (x - mean_x0).astype(np.float32)

    samples = run_to_end(bridge(oracle, y, schedule, 200, np.random.default_rng(0), eta=eta))
    assert samples.mean() == pytest.approx(MU, abs=0.02)  # skip sampling, 200 of 1000 steps
    if eta == 1.0:  # the spread needs the fine chain, as DDPM's does (200 steps give 0.27)
        full = run_to_end(bridge(oracle, y[:5000], schedule, 1000, np.random.default_rng(1), eta=eta))
        assert full.mean() == pytest.approx(MU, abs=0.02) and full.std() == pytest.approx(S, rel=0.06)
    with pytest.raises(ValueError, match="bridge steps"):
        run_to_end(bridge(oracle, y, schedule, 1, np.random.default_rng(0)))


def test_v_prediction_converts_to_the_same_samples():
    """A v-predicting network (v = √ᾱ ε - √(1-ᾱ) x_0) sampled through as_epsilon gives the ε-network's samples."""
    from napari_cellsynth.core.samplers import as_epsilon

    eps_schedule = NoiseSchedule("cosine", 1000)
    v_schedule = NoiseSchedule("cosine", 1000, prediction="v")
    eps_fn = gaussian_eps(eps_schedule)

    def v_fn(x, t):  # the analytic model's v: with x_0 = (x - √(1-ᾱ) ε) / √ᾱ
        ab = eps_schedule.alpha_bar[t].reshape(-1, 1, 1, 1)
        eps = eps_fn(x, t)
        x0 = (x - np.sqrt(1 - ab) * eps) / np.sqrt(ab)
        return (np.sqrt(ab) * eps - np.sqrt(1 - ab) * x0).astype(np.float32)

    noise = np.random.default_rng(0).standard_normal((500, 1, 2, 2)).astype(np.float32)
    want = run_to_end(ddim(eps_fn, noise, eps_schedule, 30, np.random.default_rng(1)))
    got = run_to_end(ddim(as_epsilon(v_fn, v_schedule), noise, v_schedule, 30, np.random.default_rng(1)))
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert as_epsilon(eps_fn, eps_schedule) is eps_fn
    assert NoiseSchedule.from_card(v_schedule.to_card()).prediction == "v"
    with pytest.raises(ValueError, match="unknown prediction type"):
        NoiseSchedule("cosine", 1000, prediction="x0")
