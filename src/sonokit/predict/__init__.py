"""Prediction on new files with a trained run folder."""

from sonokit.predict.runner import LoadedRun, load_run, predict_files, predict_to_csv

__all__ = ["LoadedRun", "load_run", "predict_files", "predict_to_csv"]
