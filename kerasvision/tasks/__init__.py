"""The task flows behind the recipes, and their command line: the only code that reads parsed flags.

Modules:
    cli: the common recipe flags (`recipe_parser`), `setup_run`, and `run`,
        which turns a bad input into one `error:` line and exit status 2.
    segmentation, classification, generative: data flags, training, report,
        plots and export of each task, as the recipes run them.
    runs: what the task flows share (two-phase training from flags, run
        summaries).
"""
