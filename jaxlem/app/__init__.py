"""Applications on top of envs and trainers: CLI, jobs, reports, benchmarks."""
