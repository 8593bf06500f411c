"""How many agents CTCE's joint networks fit for on the device that trains them.

CTCE's actor reads all N agents' observations in one input row and writes all N agents'
action parameters in one output row; its critic reads the same row. Their first and last
layers, hence their parameters, grow linearly with N, while every other memory cost of an
update (rollout storage, minibatch activations) is the same as IPPO's. Training keeps, per
parameter, the float32 value, its gradient and Adam's two moments: 16 bytes. The limit is
where those bytes pass ``ctce_memory_fraction`` of the device's memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax

BYTES_PER_PARAMETER = 16  # float32 value, gradient, Adam's first and second moment


def device_memory_bytes(device: jax.Device | None = None) -> int:
    """The memory one device may use (bytes): an accelerator's allocator limit, or the host's
    physical memory for a CPU device."""
    device = device or jax.devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # backends without memory statistics (some CPU builds)
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def mlp_parameters(sizes: Sequence[int]) -> int:
    """Weights and biases of a dense MLP with layer widths ``sizes`` (input first)."""
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


def joint_parameters(
    num_agents: int, obs_dim: int, out_per_agent: int, hidden: Sequence[int]
) -> int:
    """Parameters of CTCE's joint actor (N*obs_dim -> hidden -> N*out_per_agent) and critic
    (N*obs_dim -> hidden -> 1)."""
    row = num_agents * obs_dim
    return mlp_parameters([row, *hidden, num_agents * out_per_agent]) + mlp_parameters(
        [row, *hidden, 1]
    )


def max_joint_agents(obs_dim: int, out_per_agent: int, hidden: Sequence[int], budget: float) -> int:
    """The largest N whose joint networks' training bytes fit in ``budget`` bytes (0 if none)."""
    fixed = joint_parameters(0, obs_dim, out_per_agent, hidden)
    per_agent = joint_parameters(1, obs_dim, out_per_agent, hidden) - fixed
    return max(0, int((budget / BYTES_PER_PARAMETER - fixed) // per_agent))


def check_joint(
    num_agents: int,
    obs_dim: int,
    out_per_agent: int,
    hidden: Sequence[int],
    fraction: float,
    memory_bytes: int | None = None,
) -> None:
    """Raise ``ValueError`` naming ``num_agents`` when CTCE's joint networks would need more
    than ``fraction`` of the device's memory to train."""
    memory = device_memory_bytes() if memory_bytes is None else memory_bytes
    budget = fraction * memory
    need = BYTES_PER_PARAMETER * joint_parameters(num_agents, obs_dim, out_per_agent, hidden)
    if need > budget:
        limit = max_joint_agents(obs_dim, out_per_agent, hidden, budget)
        raise ValueError(
            f"num_agents: got {num_agents} with algo='ctce'; allowed range [1, {limit}] on this "
            f"device: the joint actor and critic would hold "
            f"{need / BYTES_PER_PARAMETER:,.0f} parameters ({need / 2**30:.2f} GiB with "
            f"gradients and Adam's moments), above ctce_memory_fraction={fraction:g} of its "
            f"{memory / 2**30:.1f} GiB; use mappo or ippo for large N"
        )
