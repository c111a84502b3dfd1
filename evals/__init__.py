"""Evaluation tasks: sample generators (token-exact, seeded) and scorers. See `evals.registry` for names."""
