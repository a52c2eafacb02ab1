# AIM ablation without PAM (no decoupling modules: the weights rho_d are a softmax over the
# two original blocks); otherwise as aim_r18_avdigits.py (switch_epoch 5 is ours).
_base_ = ['./aim_r18_avdigits.py']
custom_hooks = [
    dict(type='AIMHook', switch_epoch=5, pam=False,
         dap_optimizer=dict(type='Adam', lr=0.05)),
]
