"""Plots, each drawn from a run's results.json alone (``--replot RUN_DIR`` redraws them)."""
