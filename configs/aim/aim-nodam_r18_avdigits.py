# AIM ablation without DAM (every depth coefficient alpha_d = 1); otherwise as
# aim_r18_avdigits.py (switch_epoch 5 is ours).
_base_ = ['./aim_r18_avdigits.py']
custom_hooks = [
    dict(type='AIMHook', switch_epoch=5, dam=False,
         dap_optimizer=dict(type='Adam', lr=0.05)),
]
