"""Threefry, JAX's default random number generator, lowered without a loop on the CPU.

On the CPU, JAX lowers the threefry2x32 hash as a loop of five iterations (a smaller program
to compile); on every other backend it writes the twenty rounds out. Inside a vmapped,
scanned trainer every random draw then runs a small while loop whose carried tuple XLA:CPU
copies on every iteration: in lem-v0 IPPO at N = 10 those copies were a fifth of an update's
op time. The unrolled lowering computes the same rounds in the same order, so every random
bit is the same (a test checks it); only the compiled program differs (a few seconds more to
compile, faster to run). ``import jaxlem`` switches it on unless the environment sets
``JAXLEM_ROLLED_THREEFRY=1``. Programs compiled before the switch keep their lowering.
"""

from __future__ import annotations

import functools

from jax.interpreters import mlir

try:  # JAX's lowering rule is private: without it, the default lowering stays
    from jax._src.random import threefry2x32 as _jax_threefry
except ImportError:  # pragma: no cover - another JAX layout
    _jax_threefry = None


def set_cpu_lowering(unrolled: bool = True) -> bool:
    """Lower threefry2x32 on the CPU unrolled (``True``) or as JAX's loop (``False``) in
    programs compiled from now on; ``False`` returned if this JAX has no such rule to swap."""
    lowering = getattr(_jax_threefry, "_threefry2x32_lowering", None)
    primitive = getattr(_jax_threefry, "threefry2x32_p", None)
    if lowering is None or primitive is None:
        return False
    rule = mlir.lower_fun(
        functools.partial(lowering, use_rolled_loops=not unrolled), multiple_results=True
    )
    mlir.register_lowering(primitive, rule, platform="cpu")
    return True
