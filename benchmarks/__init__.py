"""Benchmarks that print their figures as ratios measured side by side in one run."""
