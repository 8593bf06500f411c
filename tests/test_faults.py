"""Bad input at every entry point gives a clear error naming the input, and nothing is lost or
silently wrong: the catalogue of probes a hostile new user tried."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_module

import jaxlem
from jaxlem.app.job import check_config, check_resume, run_job
from jaxlem.grid import load_case, solve_dcopf, solve_sced
from jaxlem.train import TrainConfig, make_train
from jaxlem.train import evaluate as ev
from jaxlem.train.driver import resumed_schedule

ENV = jaxlem.make("lem-v0", num_agents=3, num_steps=4)
TINY = dict(num_envs=4, rollout_len=4, num_minibatches=2, hidden=(8,), eval_every=0)


# ----------------------------------------------------------------------------- actions
@pytest.mark.parametrize("shape", [(3, 2), (3, 5), (1, 3), (3,), (2, 3)])
def test_actions_of_the_wrong_shape_are_refused(shape):
    _, state = ENV.reset(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"action: shape .*; allowed: \(3, 3\)"):
        ENV.step(jax.random.PRNGKey(1), state, jnp.zeros(shape))


def test_partner_stage_bounds_are_per_column():
    env = jaxlem.make("lem-v0", num_agents=5, partner_stage=True)
    space = env.action_space()
    draws = np.asarray(jax.vmap(space.sample)(jax.random.split(jax.random.PRNGKey(0), 200)))
    assert draws[..., :3].min() >= -1.0 and draws[..., :3].max() <= 1.0
    assert draws[..., 3].max() > 1.0 and draws[..., 3].max() <= 4.0


# ----------------------------------------------------------------------------- params
def test_replaced_params_are_validated_where_they_enter():
    p = ENV.default_params
    nan_demand = p.replace(demand_kw=p.demand_kw.at[0].set(jnp.nan))
    with pytest.raises(ValueError, match=r"params: demand_kw\[0, 0\]: got nan"):
        make_train(TrainConfig(**TINY), ENV, nan_demand)
    with pytest.raises(ValueError, match=r"eval_params: coop_alpha.*got 5"):
        make_train(TrainConfig(**TINY), ENV, None, p.replace(coop_alpha=jnp.asarray(5.0)))
    bank = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (2, *jnp.shape(x))), nan_demand)
    with pytest.raises(ValueError, match="bank: demand_kw"):
        ev.episode_kpis(ENV, {"rule": ENV.evaluation().baselines["dso_only"]}, bank, 0)


def test_short_profile_tables_are_refused():
    env = jaxlem.make("lem-v0", num_agents=3, profile_source="synthetic")
    p = env.default_params
    with pytest.raises(ValueError, match="pv_table: profile length 12"):
        make_train(TrainConfig(**TINY), env, p.replace(pv_table=p.pv_table[:, :12]))


# ----------------------------------------------------------------------------- trainer config
@pytest.mark.parametrize(
    ("values", "pattern"),
    [
        (dict(lr="abc"), r"train\.lr: got 'abc'"),
        (dict(lrr=1e-3), r"train\.lrr: unknown field \(did you mean 'lr'\?\)"),
        (dict(hidden="64"), r"train\.hidden: got '64'"),
        (dict(total_timesteps=[1, 2]), r"train\.total_timesteps: got \[1, 2\]"),
        (dict(normalize_obs="yes"), r"train\.normalize_obs"),
        (dict(num_minibatches=5), r"num_minibatches: got 5 .* a divisor of 1536"),
    ],
)
def test_trainer_config_values_name_the_field(values, pattern):
    with pytest.raises(ValueError, match=pattern):
        TrainConfig.from_dict(values)


# ----------------------------------------------------------------------------- job config
def _job_cfg(**over):
    with initialize_config_module("jaxlem.configs", version_base=None):
        cfg = compose("config", overrides=["experiment=smoke"])
    from omegaconf import OmegaConf

    out = OmegaConf.to_container(cfg, resolve=True)
    out.update(over)
    return out


@pytest.mark.parametrize(
    ("over", "pattern"),
    [
        (dict(foo=1), r"foo: unknown key"),
        (dict(num_seed=2), r"num_seed: unknown key \(did you mean 'num_seeds'\?\)"),
        (dict(eval_scenarios=1), r"eval_scenarios: got 1; allowed: an integer >= 2"),
        (dict(eval_scenarios=0), r"eval_scenarios: got 0"),
        (dict(num_seeds=0), r"num_seeds: got 0; allowed: an integer >= 1"),
        (dict(num_chunks="4"), r"num_chunks: got '4'"),
    ],
)
def test_job_config_is_checked_before_anything_compiles(over, pattern):
    with pytest.raises(ValueError, match=pattern):
        check_config(_job_cfg(**over))


def test_unknown_env_keys_are_refused_with_a_suggestion(tmp_path):
    cfg = _job_cfg()
    cfg["env"]["param"] = {"coop_alpha": 0.5}
    with pytest.raises(ValueError, match=r"env\.param: unknown key \(did you mean 'params'\?\)"):
        run_job(cfg, tmp_path)
    assert not (tmp_path / "config.yaml").exists()


def test_resume_refuses_what_changes_the_run_and_names_every_key():
    old = _job_cfg()
    new = _job_cfg(num_chunks=8, resume=True)
    new["train"] = {**new["train"], "hidden": [32], "lr": 1e-2}
    with pytest.raises(ValueError) as err:
        check_resume(old, new)
    for key in ("num_chunks", "train.hidden", "train.lr"):
        assert key in str(err.value)
    allowed = check_resume(old, _job_cfg(eval_scenarios=16, resume=True))
    assert allowed == ["eval_scenarios: 8 -> 16"]
    longer = _job_cfg(resume=True)
    longer["train"] = {**longer["train"], "total_timesteps": 2 * old["train"]["total_timesteps"]}
    assert check_resume(old, longer)[0].startswith("train.total_timesteps: ")


def test_resumed_schedule_extends_with_more_steps_and_refuses_fewer_or_other_chunks():
    m = {"chunk": 3, "num_chunks": 3, "updates": 2, "num_updates": 6, "schedule_chunks": 3}
    assert resumed_schedule(m, 6, 3) == (2, 3)  # the same run
    assert resumed_schedule(m, 10, 3) == (2, 5)  # extended: same chunk length, more chunks
    assert resumed_schedule(m, 11, 3) == (2, 6)  # whole chunks
    with pytest.raises(ValueError, match="train.total_timesteps: gives 5 updates"):
        resumed_schedule(m, 5, 3)
    with pytest.raises(ValueError, match="num_chunks: got 2 on resume; allowed: 3"):
        resumed_schedule(m, 6, 2)
    extended = {**m, "num_chunks": 5, "num_updates": 10}  # a second resume of the extension
    assert resumed_schedule(extended, 10, 3) == (2, 5)
    old = {"chunk": 1, "num_chunks": 3, "updates": 4}  # written before runs could be extended
    assert resumed_schedule(old, 10, 3) == (4, 3)  # 10 updates in 3 chunks of 4


def test_experiment_presets_set_what_they_name_unless_overridden():
    with initialize_config_module("jaxlem.configs", version_base=None):
        learning = compose("config", overrides=["experiment=learning"])
        mine = compose("config", overrides=["experiment=learning", "num_seeds=2"])
    assert learning.num_seeds == 3 and mine.num_seeds == 2


# ----------------------------------------------------------------------------- statistics
def test_no_significance_from_fewer_than_two_samples():
    one = ev.paired(np.array([1.0]), np.array([0.5]))
    assert one["z"] is None and one["diff"] == 0.5
    same = ev.paired(np.array([1.0, 1.0]), np.array([0.0, 0.0]))
    assert same["z"] is None  # no spread: no standard error to divide by
    two = ev.paired(np.array([1.0, 2.0, 1.5]), np.array([0.0, 0.5, 0.2]))
    assert two["z"] == pytest.approx(two["diff"] / two["diff_se"])


# ----------------------------------------------------------------------------- solvers
def test_solvers_refuse_bad_inputs_outside_jit_and_stay_finite_inside():
    net = load_case("case5")
    bad_load = net.bus_load_mw.at[1].set(jnp.nan)
    with pytest.raises(ValueError, match="load_mw: got non-finite"):
        solve_dcopf(net, bad_load)
    with pytest.raises(ValueError, match="voll: got -1"):
        solve_dcopf(net, voll=-1.0)
    with pytest.raises(ValueError, match="line_limit_mw"):
        solve_dcopf(net, line_limit_mw=-jnp.ones(net.num_branches))
    price = jnp.full((5, 1), 20.0)
    with pytest.raises(ValueError, match="offer_price: got non-finite"):
        solve_sced(net, net.bus_load_mw, price.at[0, 0].set(jnp.inf), jnp.full((5, 1), 100.0))
    sol = jax.jit(lambda load: solve_dcopf(net, load))(net.bus_load_mw.at[2].set(jnp.inf))
    assert not bool(sol.converged) and sol.message().startswith("non-finite input")
    few = solve_dcopf(net, iters=1)  # stopped before the tolerance: says so
    assert not bool(few.converged) and few.message().startswith("not converged")
    assert solve_dcopf(net).message() == "optimal"
    for x in (sol.p_gen, sol.lmp, sol.flow, sol.shed, sol.objective):
        assert np.isfinite(np.asarray(x)).all()


def test_job_inputs_name_the_key():
    from jaxlem.app.job import make_bank, make_env

    with pytest.raises(ValueError, match=r"env\.kwargs\.num_agentz"):
        make_env({"env": {"id": "lem-v0", "kwargs": {"num_agentz": 3}}})
    with pytest.raises(ValueError, match=r"env\.params\.coop_alpha: got 'abc'"):
        make_bank(ENV, {"coop_alpha": "abc"}, 2, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"env\.params\.coop_alpha"):
        make_bank(ENV, {"coop_alpha": [0.1, 0.2, 0.3]}, 2, jax.random.PRNGKey(0))


def test_params_of_another_env_are_refused_by_name():
    gencos = jaxlem.make("gencos-v0").default_params
    with pytest.raises(ValueError, match="params: got GencosParams; allowed: LEMParams"):
        make_train(TrainConfig(**TINY), ENV, gencos)


def test_rollout_validates_concrete_params():
    from jaxlem.rollout import rollout

    p = ENV.default_params.replace(coop_alpha=jnp.asarray(-1.0))
    with pytest.raises(ValueError, match="coop_alpha"):
        rollout(ENV, ENV.evaluation().baselines["dso_only"], jax.random.PRNGKey(0), p)


def test_states_of_the_wrong_shape_or_env_are_refused():
    _, state = ENV.reset(jax.random.PRNGKey(0))
    action = jnp.zeros((3, 3))
    with pytest.raises(ValueError, match=r"state\.energy: shape \(1,\)"):
        ENV.step(jax.random.PRNGKey(1), state.replace(energy=state.energy[:1]), action)
    _, other = jaxlem.make("gencos-v0").reset(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="state: got a GencosState of another structure"):
        ENV.step(jax.random.PRNGKey(1), other, action)
