"""Every registered env, in a few static configurations, passes the conformance suite."""

import pytest

import jaxlem
from jaxlem.testing import check_env

# Extra configurations per env id; an id missing here is checked with its defaults. (The dcopf
# grid mode's step compiles for a minute at -O0; test_lem_env checks its invariants and vmap.)
CONFIGS = {
    "lem-v0": [
        dict(
            num_agents=5,
            num_steps=8,
            rule="mmr",
            grid_mode="capacity",
            partner_stage=True,
            use_reputation=True,
            global_obs=True,
        ),
    ],
    # the default market is 56 agents over 168 steps; test_multiactor: both scenarios' invariants
    "multiactor-v0": [
        dict(
            num_producers=3,
            num_utilities=2,
            num_consumers=5,
            num_prosumers=4,
            num_days=1,
            dt_h=4.0,
        ),
    ],
}


def _cases():
    for env_id in jaxlem.registered_envs():
        for i, kw in enumerate(CONFIGS.get(env_id, [{}])):
            name = f"{env_id}-{'-'.join(map(str, kw.values()))}"
            yield pytest.param(env_id, kw, i == 0, id=name)


@pytest.mark.parametrize(("env_id", "kwargs", "first"), list(_cases()))
def test_conformance(env_id, kwargs, first):
    # the adapter round trip compiles the step once more: once per env id is enough
    check_env(jaxlem.make(env_id, **kwargs), adapter=first)
