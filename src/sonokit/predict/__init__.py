"""Prediction with a trained run: `Predictor` (in memory or streamed into a CSV) and `sonokit predict`."""

from sonokit.core.run import LoadedRun, load_run
from sonokit.predict.predictor import Predictor, predict_to_csv
from sonokit.predict.result import PredictionFile

__all__ = ["LoadedRun", "PredictionFile", "Predictor", "load_run", "predict_to_csv"]
