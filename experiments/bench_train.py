"""Training throughput benchmark (``jaxlem.app.bench_train``; also ``jaxlem-bench train``).

python experiments/bench_train.py --out experiments/results/bench_train_cpu
"""

from jaxlem.app.bench_train import main

if __name__ == "__main__":
    main()
