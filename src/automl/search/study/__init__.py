"""The study every search method shares: its storage (storage), what it stores per trial (records),
opening an existing one (loading), --resume (resume), trials of dead orchestrators (recovery),
configurations ranked by their mean over seeds and queued on more seeds (confirm), run durations
(budget), the files read while it runs (reports), the one writer of what trials report
(trial_record), and the other orchestrators and how a search ended (shared): what both search
methods use.

Imports `space` and `trials` of `automl.search`, never a search method. This file imports none of
its modules: import the modules themselves.
"""
