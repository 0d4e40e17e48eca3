"""Evaluation: gold sets in evals/sets/, metrics, and the harness that measures them."""
