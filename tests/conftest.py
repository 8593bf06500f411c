import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

# The suite runs tiny programs whose cost is almost all XLA compilation. LLVM's -O0 backend and
# XLA:CPU's older elemental fusion emitter (instead of the MLIR fusion emitters) cut compile time
# by about half and a third. Float semantics stay the same, except which ops flush subnormals
# to zero (that follows the fusion). Subprocess tests inherit the flags. Set JAXLEM_TEST_OPT=1
# to test with the backend and emitters users get.
# Two xdist workers share one accelerator: no worker may take most of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
if os.environ.get("JAXLEM_TEST_OPT") != "1":
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
    ).strip()


# The longest tests (each 20-90 s, mostly XLA compilation) start first, so that the two workers
# end together instead of one of them finishing a long test alone at the end of the run.
LONG = (
    "test_hydra_multirun",
    "test_consumer_dilemma",
    "test_episode_trades",
    "test_market_power_kpis",
    "test_resume_after_a_chunk",
    "test_every_algorithm_trains_end_to_end",
    "test_selfplay_on_gencos",
    "test_conformance",
    "test_stage_reference",
    "test_optimum_",
    "test_invariants_dcopf",
    "test_energy_money_credit",
    "test_every_storage_and_market_power_preset",
    "test_ood_axes",
    "test_ippo_trains_lem_through_the_adapter",
    "test_sweep_levels_as_lanes",
)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not item.name.startswith(LONG))
