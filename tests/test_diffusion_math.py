"""Schedules and samplers against a noise model whose answer is known in closed form.

For data x0 ~ N(μ, s²) per pixel, x_t = sqrt(ᾱ) x0 + sqrt(1-ᾱ) ε has the optimal noise predictor
E[ε | x_t] = sqrt(1-ᾱ) (x_t - sqrt(ᾱ) μ) / (ᾱ s² + 1 - ᾱ); a correct sampler driven by it turns
N(0, 1) noise into N(μ, s²) samples.
"""

import numpy as np
import pytest

from napari_cellsynth.core.denoisers import Denoiser, DynamicThreshold, Guidance, StaticThreshold, guided
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.samplers import (SAMPLERS, ddim, ddpm, dpm_solver_pp_2m, dpm_solver_pp_3m, run_sampler,
                                            sampler_timesteps, timesteps)
from napari_cellsynth.core.schedules import BridgeSchedule, NoiseSchedule

MU, S = 0.7, 0.3


def gaussian_eps(schedule):
    def model_fn(x, t):
        ab = schedule.alpha_bar[t].reshape(-1, *([1] * (x.ndim - 1)))
        return (np.sqrt(1 - ab) * (x - np.sqrt(ab) * MU) / (ab * S ** 2 + 1 - ab)).astype(np.float32)
    return model_fn


def gaussian_v(schedule):
    """The same optimal model as a v-predictor: v = √ᾱ ε - √(1-ᾱ) x̂₀ with x̂₀ = E[x₀ | x_t]; well defined at ᾱ = 0."""
    def model_fn(x, t):
        ab = schedule.alpha_bar[t].reshape(-1, *([1] * (x.ndim - 1)))
        x0 = MU + np.sqrt(ab) * S ** 2 * (x - np.sqrt(ab) * MU) / (ab * S ** 2 + 1 - ab)
        eps = np.sqrt(1 - ab) * (x - np.sqrt(ab) * MU) / (ab * S ** 2 + 1 - ab)
        return (np.sqrt(ab) * eps - np.sqrt(1 - ab) * x0).astype(np.float32)
    return model_fn


def denoiser(schedule, threshold=None, fn=None):
    return Denoiser((fn or gaussian_eps)(schedule), schedule, threshold)


def steps(schedule, n, spacing="leading"):
    return timesteps(schedule.num_timesteps, n, spacing)


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


@pytest.mark.parametrize("name", ["ddpm", "ddim", "ddim_eta1", "dpm", "dpm3"])
def test_samplers_reach_the_known_distribution(name):
    schedule = NoiseSchedule("cosine", 1000)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((4000, 1, 2, 2)).astype(np.float32)
    job = {"ddpm": lambda: ddpm(denoiser(schedule), noise, schedule, steps(schedule, 1000), rng),
           "ddim": lambda: ddim(denoiser(schedule), noise, schedule, steps(schedule, 50), rng),
           "ddim_eta1": lambda: ddim(denoiser(schedule), noise, schedule, steps(schedule, 100), rng, eta=1.0),
           "dpm": lambda: dpm_solver_pp_2m(denoiser(schedule), noise, schedule, steps(schedule, 20, "trailing"), rng),
           "dpm3": lambda: dpm_solver_pp_3m(denoiser(schedule), noise, schedule, steps(schedule, 20, "trailing"), rng),
           }[name]()
    samples = run_to_end(job)
    assert samples.shape == noise.shape and samples.dtype == np.float32
    assert samples.mean() == pytest.approx(MU, abs=0.02)
    assert samples.std() == pytest.approx(S, rel=0.06)


def test_deterministic_samplers_are_reproducible_and_seeded_ones_follow_the_seed():
    schedule = NoiseSchedule("linear", 200)
    noise = np.random.default_rng(1).standard_normal((8, 1, 4, 4)).astype(np.float32)
    a = run_to_end(ddim(denoiser(schedule), noise, schedule, steps(schedule, 20), np.random.default_rng(5)))
    b = run_to_end(ddim(denoiser(schedule), noise, schedule, steps(schedule, 20), np.random.default_rng(6)))
    np.testing.assert_array_equal(a, b)  # η = 0 ignores the generator
    for solver in (dpm_solver_pp_2m, dpm_solver_pp_3m):
        np.testing.assert_array_equal(
            run_to_end(solver(denoiser(schedule), noise, schedule, steps(schedule, 10), np.random.default_rng(5))),
            run_to_end(solver(denoiser(schedule), noise, schedule, steps(schedule, 10), np.random.default_rng(6))))
    all_steps = steps(schedule, 200)
    c = run_to_end(ddpm(denoiser(schedule), noise, schedule, all_steps, np.random.default_rng(5)))
    d = run_to_end(ddpm(denoiser(schedule), noise, schedule, all_steps, np.random.default_rng(5)))
    e = run_to_end(ddpm(denoiser(schedule), noise, schedule, all_steps, np.random.default_rng(6)))
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
        threshold = None if clip is None else StaticThreshold.symmetric(clip, 1)
        fn = Denoiser(model_fn, schedule, threshold)
        return run_to_end({"ddpm": lambda: ddpm(fn, noise, schedule, steps(schedule, 1000), rng),
                           "ddim": lambda: ddim(fn, noise, schedule, steps(schedule, 50), rng),
                           "dpm": lambda: dpm_solver_pp_2m(fn, noise, schedule, steps(schedule, 20, "trailing"), rng),
                           }[name]())

    assert np.abs(sample(wrong, None)).max() > 1.05
    assert np.abs(sample(wrong, 1.0)).max() <= 1.0 + 1e-5
    right = sample(gaussian_eps(schedule), 3.0)  # the true x₀ (N(0.7, 0.3²)) never reaches ±3
    assert right.mean() == pytest.approx(MU, abs=0.03) and right.std() == pytest.approx(S, rel=0.1)


def test_progress_counts_network_calls():
    schedule = NoiseSchedule("linear", 100)
    job = dpm_solver_pp_2m(denoiser(schedule), np.zeros((1, 1, 2, 2), np.float32), schedule, steps(schedule, 10), None)
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


def test_v_prediction_gives_the_same_samples_as_epsilon():
    """A v-predicting network (v = √ᾱ ε - √(1-ᾱ) x_0) through the Denoiser gives the ε-network's samples."""
    eps_schedule = NoiseSchedule("cosine", 1000)
    v_schedule = NoiseSchedule("cosine", 1000, prediction="v")
    noise = np.random.default_rng(0).standard_normal((500, 1, 2, 2)).astype(np.float32)
    ts = steps(eps_schedule, 30)
    want = run_to_end(ddim(denoiser(eps_schedule), noise, eps_schedule, ts, np.random.default_rng(1)))
    got = run_to_end(ddim(Denoiser(gaussian_v(eps_schedule), v_schedule), noise, v_schedule, ts, np.random.default_rng(1)))
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert NoiseSchedule.from_card(v_schedule.to_card()).prediction == "v"
    with pytest.raises(ValueError, match="unknown prediction type"):
        NoiseSchedule("cosine", 1000, prediction="x0")


def test_zero_terminal_snr_schedule_and_samplers_from_pure_noise():
    """Lin et al.'s rescaling keeps ᾱ_0 and makes ᾱ_{T-1} = 0; every sampler started on that pure-noise
    step (trailing spacing) with the v-model reaches the data distribution; ε-prediction is refused."""
    schedule = NoiseSchedule("linear", 1000, prediction="v", zero_terminal_snr=True)
    plain = NoiseSchedule("linear", 1000)
    assert schedule.alpha_bar[-1] == 0 and schedule.alpha_bar[0] == pytest.approx(plain.alpha_bar[0])
    assert np.all(np.diff(schedule.alpha_bar) < 0)
    assert NoiseSchedule.from_card(schedule.to_card()).alpha_bar.tolist() == schedule.alpha_bar.tolist()
    with pytest.raises(ValueError, match="needs v-prediction"):
        NoiseSchedule("linear", 1000, zero_terminal_snr=True)
    noise = np.random.default_rng(0).standard_normal((4000, 1, 2, 2)).astype(np.float32)
    for name in SAMPLERS:
        ts = sampler_timesteps(name, schedule, 100, "trailing")
        assert name == "ddpm" or ts[0] == 999
        samples = run_to_end(run_sampler(name, Denoiser(gaussian_v(schedule), schedule), noise, schedule, ts,
                                         np.random.default_rng(1)))
        assert np.isfinite(samples).all()
        assert samples.mean() == pytest.approx(MU, abs=0.03), name
        assert samples.std() == pytest.approx(S, rel=0.06), name


def test_solver_order_of_accuracy_on_the_analytic_model():
    """Against a 1000-step DPM-Solver++(3M) reference on the same timestep grid (t = 999 … 0), halving the
    step size from 40 to 80 steps cuts DDIM's error about 2× (first order) and DPM-Solver++(2M)'s and
    (3M)'s more than 3× (higher order); the multistep solvers beat DDIM at equal calls."""
    schedule = NoiseSchedule("cosine", 1000)
    noise = np.random.default_rng(0).standard_normal((200, 1, 2, 2)).astype(np.float32)
    ref = run_to_end(dpm_solver_pp_3m(denoiser(schedule), noise, schedule, steps(schedule, 1000, "linspace"), None))

    def error(solver, n):
        out = run_to_end(solver(denoiser(schedule), noise, schedule, steps(schedule, n, "linspace"), None))
        return float(np.abs(out - ref).max())

    assert 1.5 < error(ddim, 40) / error(ddim, 80) < 2.5
    assert error(dpm_solver_pp_2m, 40) / error(dpm_solver_pp_2m, 80) > 3
    assert error(dpm_solver_pp_3m, 40) / error(dpm_solver_pp_3m, 80) > 3
    assert max(error(dpm_solver_pp_2m, 80), error(dpm_solver_pp_3m, 80)) < error(ddim, 80)


def test_registry_dispatches_and_refuses_foreign_options():
    schedule = NoiseSchedule("linear", 100)
    x = np.zeros((2, 1, 2, 2), np.float32)
    ts = sampler_timesteps("ddpm", schedule, 7, "trailing")
    assert len(ts) == 100  # DDPM always walks the whole chain
    with pytest.raises(ValueError, match="takes no option"):
        run_sampler("dpm_solver_pp_2m", denoiser(schedule), x, schedule, ts, None, eta=0.5)
    with pytest.raises(ValueError, match="unknown sampler"):
        run_sampler("euler", denoiser(schedule), x, schedule, ts, None)


def test_thresholds_static_per_channel_and_dynamic():
    x0 = np.stack([np.full((4, 4), 5.0), np.full((4, 4), -5.0)])[None]
    static = StaticThreshold((-1.0, -2.0), (1.0, 3.0))
    np.testing.assert_array_equal(static(x0)[0, :, 0, 0], [1.0, -2.0])
    assert static.record() == {"type": "static", "low": [-1.0, -2.0], "high": [1.0, 3.0]}
    inside = np.random.default_rng(0).uniform(-0.9, 0.9, (3, 2, 8, 8))
    np.testing.assert_array_equal(DynamicThreshold(99.5)(inside), inside)  # s = 1: left alone
    out = DynamicThreshold(99.5)(inside * 4)  # s ≈ 3.6: pulled back into [-1, 1]
    assert np.abs(out).max() <= 1 + 1e-12 and np.abs(out).max() > 0.9
    with pytest.raises(ValueError, match="percentile"):
        DynamicThreshold(20)
    with pytest.raises(ValueError, match="positive"):
        StaticThreshold.symmetric(0, 3)


def test_guidance_acts_only_inside_its_interval_and_counts_its_calls():
    """Kynkäänniemi et al. 2024: outside (lo, hi] the plain conditional prediction, one network call; inside it the
    guided mix, two calls.  σ_t = √((1-ᾱ)/ᾱ) comes from the schedule alone."""
    schedule = NoiseSchedule("sigmoid", 100, prediction="v", zero_terminal_snr=True)
    sigmas = schedule.sigmas
    assert np.isinf(sigmas[-1]) and np.all(np.diff(sigmas) > 0)
    assert sigmas[50] == pytest.approx(np.sqrt((1 - schedule.alpha_bar[50]) / schedule.alpha_bar[50]))

    def net(x, t, c):
        return np.broadcast_to(c.reshape(-1, 1).astype(np.float32), x.shape).copy()

    lo, hi = float(sigmas[30]), float(sigmas[70])
    mix = guided(net, [2, 2], null_class=0, scale=Guidance(3.0, (lo, hi)), sigmas=sigmas)
    x = np.zeros((2, 2))
    for t, inside in ((10, False), (30, False), (31, True), (70, True), (71, False), (99, False)):
        assert np.allclose(mix(x, np.full(2, t)), 6 if inside else 2), t
        assert mix.calls(t) == (2 if inside else 1)
    # autoguidance: the reference is a weaker net with the class, not the null class
    auto = guided(net, [2, 2], null_class=0, scale=Guidance(3.0), sigmas=sigmas,
                  reference=lambda x, t, c: np.full(x.shape, 1.5, np.float32))
    assert np.allclose(auto(x, np.full(2, 5)), 1.5 + 3 * (2 - 1.5))
    with pytest.raises(ValueError, match="0 ≤ low < high"):
        Guidance(2.0, (5.0, 1.0))
    with pytest.raises(ValueError, match="noise levels"):
        guided(net, [2], 0, Guidance(2.0, (0.1, 1.0)))


def test_denoiser_counts_the_calls_each_guided_step_costs():
    schedule = NoiseSchedule("linear", 100)
    sigmas = schedule.sigmas
    net = guided(lambda x, t, c: np.zeros_like(x), [1], 0, Guidance(2.0, (float(sigmas[40]), float(sigmas[80]))),
                 sigmas=sigmas)
    denoise = Denoiser(net, schedule)
    ts = steps(schedule, 10)
    run_to_end(dpm_solver_pp_2m(denoise, np.zeros((1, 1, 2, 2), np.float32), schedule, ts, None))
    assert denoise.calls == sum(2 if 40 < t <= 80 else 1 for t in ts)
