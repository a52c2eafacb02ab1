from .multimodal_preprocessor import MultimodalDataPreprocessor

__all__ = ['MultimodalDataPreprocessor']
