"""One study: its space and plan, the search loop, and how trials are started and read.

Runs in the main process: nothing here imports torch.
"""
