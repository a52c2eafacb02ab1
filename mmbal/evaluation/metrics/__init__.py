"""Metrics of mmbal."""
from .multimodal_accuracy import MultimodalAccuracy
from .predictions import MultimodalPredictions, label_arrays, load_predictions
from .regression_metric import AffectRegressionMetric

__all__ = ['MultimodalAccuracy', 'MultimodalPredictions', 'load_predictions', 'label_arrays',
           'AffectRegressionMetric']
