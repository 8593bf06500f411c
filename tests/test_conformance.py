"""Every registered env, in a few static configurations, passes the conformance suite."""

import pytest
from conformance import check_env

import jaxlem

# Extra configurations per env id; an id missing here is checked with its defaults.
CONFIGS = {
    "lem-v0": [
        dict(num_agents=4),
        dict(
            num_agents=5,
            num_steps=8,
            rule="mmr",
            grid_mode="capacity",
            partner_stage=True,
            use_reputation=True,
            global_obs=True,
        ),
        dict(num_agents=6, num_steps=6, grid_mode="dcopf"),
    ],
}


def _cases():
    for env_id in jaxlem.registered_envs():
        for kw in CONFIGS.get(env_id, [{}]):
            yield pytest.param(env_id, kw, id=f"{env_id}-{'-'.join(map(str, kw.values()))}")


@pytest.mark.parametrize(("env_id", "kwargs"), list(_cases()))
def test_conformance(env_id, kwargs):
    check_env(jaxlem.make(env_id, **kwargs))
