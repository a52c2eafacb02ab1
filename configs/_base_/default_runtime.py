default_scope = 'mmbal'
runner_type = 'MMBalRunner'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Model selection on the validation split: keep the last and the best checkpoint
    # (SafeCheckpointHook: deletes an old checkpoint only once its successor is written).
    checkpoint=dict(type='SafeCheckpointHook', interval=1, max_keep_ckpts=1,
                    save_best='accuracy/fused', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # timeout: seconds a collective waits for the other ranks (mmbal.utils.dist.DEFAULT_TIMEOUT);
    # on a CPU machine the backend becomes gloo.
    dist_cfg=dict(backend='nccl', timeout=600),
    # Host allocator (glibc only; mmbal.utils.host_allocator): keep freed blocks up to 32 MiB
    # in the heap and up to 1 GiB of free heap in the process, so that a CPU training step
    # reuses the memory its predecessor freed instead of page-faulting it in again (on the
    # demo job ~7,000 faults and ~15 ms of system time per iteration before; none after).
    # malloc_cfg=None keeps glibc's defaults.
    malloc_cfg=dict(mmap_threshold=32 * 1024**2, trim_threshold=1024**3),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=True, window_size=20)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
