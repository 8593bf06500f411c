"""Env scalability benchmark (issue: LEM core). Same as ``jaxlem-bench``; see jaxlem/app/bench.py.

python experiments/bench_env.py --out experiments/results/bench_env_cpu
"""

from jaxlem.app.bench import main

if __name__ == "__main__":
    main()
