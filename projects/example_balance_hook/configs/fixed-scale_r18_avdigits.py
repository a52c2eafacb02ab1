# Concat on AV-Digits with the third-party FixedGradientScaleHook: the audio encoder's
# gradient is doubled. Run from the repository root with PYTHONPATH=. (see README).
_base_ = ['../../../configs/concat/concat_r18_avdigits.py']
custom_imports = dict(imports=['projects.example_balance_hook'], allow_failed_imports=False)
custom_hooks = [dict(type='FixedGradientScaleHook', coefficients=dict(audio=2.0))]
