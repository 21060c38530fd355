"""The flow's stages after the command line, one module each: `search` (the skeleton both search
methods share, and the Optuna loop's part), `pbt` (population-based training's part and what
follows a population), `validate` (the race against the starting configuration, with the rule of
`selection`), `final` (the chosen configuration trained once more) and `report` (the choice exported,
the reports, the summary); `modes` chains them for each --mode, and `context` is what the stages
after the search share (the study, its folder, the stage log, how runs start)."""
