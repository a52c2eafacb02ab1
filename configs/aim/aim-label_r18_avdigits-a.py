# AIM ablation with label-based block scores instead of the prototypes: each block's output
# is carried through the later blocks (detached) and the modality's analytic share of the
# classifier; otherwise as aim_r18_avdigits-a.py (switch_epoch 5 is ours).
_base_ = ['./aim_r18_avdigits-a.py']
custom_hooks = [
    dict(type='AIMHook', switch_epoch=5, score_source='label',
         dap_optimizer=dict(type='Adam', lr=0.05)),
]
