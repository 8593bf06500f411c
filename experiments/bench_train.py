"""Training throughput benchmark (``jaxlem.train.bench``; also ``jaxlem-bench train``).

python experiments/bench_train.py --out experiments/results/bench_train_cpu
"""

from jaxlem.train.bench import main

if __name__ == "__main__":
    main()
