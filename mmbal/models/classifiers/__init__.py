from .multimodal_classifier import MultimodalClassifier

__all__ = ['MultimodalClassifier']
