"""Population-based training, the second search method: a population of members trains in segments;
between segments the worst copy the best (exploit) and change their hyperparameters (explore).

The plan (plan), the pure decisions: which parameters a member may change as it trains and how they
are perturbed (explore), which members copy which (exploit); the population as the study holds it
and its next generation (population); the loop over segments (loop). Imports `space`, `study` and
`trials` of `automl.search`. This file imports none of its modules: import the modules themselves.
"""
