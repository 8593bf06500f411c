"""Env scalability benchmark (issue: LEM core). Same as ``jaxlem-bench``; see jaxlem/bench.py.

python experiments/bench_env.py --out experiments/results/bench_env_cpu
"""

from jaxlem.bench import main

if __name__ == "__main__":
    main()
