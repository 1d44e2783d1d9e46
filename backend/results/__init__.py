"""Results: chart series, comparisons, the Pareto front, exports and the pruned model download."""
