from .fixed_scale_hook import FixedGradientScaleHook

__all__ = ['FixedGradientScaleHook']
