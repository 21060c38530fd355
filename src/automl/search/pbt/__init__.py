"""Population-based training, the second search method: a population of members trains in segments;
between segments the worst copy the best (exploit) and change their hyperparameters (explore).

The decisions are pure: which parameters a member may change as it trains and how they are
perturbed (explore), and which members copy which (exploit). Imports `space` of `automl.search`.
This file imports none of its modules: import the modules themselves.
"""
