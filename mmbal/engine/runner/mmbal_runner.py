"""MMEngine's Runner with safe checkpoint loading and test-on-best-checkpoint."""
import json
import os.path as osp

from mmengine.dist import barrier, is_main_process
from mmengine.logging import print_log
from mmengine.runner import Runner

from mmbal.registry import RUNNERS
from mmbal.utils import safe_checkpoint_loading


@RUNNERS.register_module()
class MMBalRunner(Runner):
    """A Runner whose checkpoint loads keep ``weights_only=True``.

    Resume and ``load_from`` run inside :func:`safe_checkpoint_loading`, which
    allows exactly the globals MMEngine writes; nothing falls back to
    ``weights_only=False``.
    """

    def resume(self, filename: str, *args, **kwargs) -> None:
        with safe_checkpoint_loading():
            super().resume(filename, *args, **kwargs)

    def load_checkpoint(self, filename: str, *args, **kwargs):
        with safe_checkpoint_loading():
            return super().load_checkpoint(filename, *args, **kwargs)

    def test_best(self) -> dict:
        """Test the checkpoint that the val metric selected (the last model if none).

        The test metrics, the checkpoint and the seed go to
        ``<work_dir>/test_results.json`` so benchmark tools read one file.
        """
        best = self.message_hub.get_info('best_ckpt')
        barrier()  # rank 0 may still be writing the checkpoint the others load
        if best is not None:
            print_log(f'testing the val-selected checkpoint {best}', logger='current')
            self.load_checkpoint(best)
        else:
            print_log('no val-selected checkpoint (no save_best): testing the last model',
                      logger='current')
        metrics = self.test()
        if is_main_process():
            record = dict(checkpoint=best, seed=self.seed, trained_epochs=self.epoch,
                          best_val=_to_builtin(self.message_hub.get_info('best_score')),
                          test=_to_builtin(metrics))
            with open(osp.join(self.work_dir, 'test_results.json'), 'w') as f:
                json.dump(record, f, indent=2)
        return metrics


def _to_builtin(value):
    """JSON-ready copy of metrics that may hold numpy or torch scalars."""
    if isinstance(value, dict):
        return {k: _to_builtin(v) for k, v in value.items()}
    return value.item() if hasattr(value, 'item') else value
