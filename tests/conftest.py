import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

# The suite runs tiny programs whose cost is almost all XLA compilation; LLVM's -O0 backend halves
# compile time without changing float semantics. Subprocess tests inherit the flag. Set
# JAXLEM_TEST_OPT=1 to test with the optimised backend users get.
# Two xdist workers share one accelerator: no worker may take most of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
if os.environ.get("JAXLEM_TEST_OPT") != "1":
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()
