"""A Config that runs yapf on its text once per content instead of at every use."""
import copy

from mmengine.config import Config

# Config's own property body (read at import: later patches of the property do not apply).
_config_text = Config.pretty_text.fget


class FormatOnceConfig(Config):
    """``Config`` whose ``pretty_text`` is formatted by yapf once per distinct content.

    MMEngine's ``pretty_text`` formats the whole config with yapf at every call
    (about 60 ms for the demo config on an idle 2-core machine, ten times that on a
    loaded one). A Runner asks for it at start-up (the log, the dumped config, the
    visualizer, each loop's ``RuntimeInfoHook``) and in every ``save_checkpoint``:
    twice per epoch with a best checkpoint. Here the unformatted text (under 1 ms)
    is the key of the last formatted one, so a config changed in between is
    formatted again: the text is never stale.
    """

    @classmethod
    def of(cls, cfg: Config) -> 'FormatOnceConfig':
        """``cfg`` itself if it is one already, else a view sharing its contents."""
        if isinstance(cfg, cls):
            return cfg
        if not isinstance(cfg, Config):
            raise TypeError(f'FormatOnceConfig.of expects an mmengine Config, '
                            f'got {type(cfg).__name__}')
        other = cls.__new__(cls)
        other.__dict__.update(cfg.__dict__)
        return other

    @property
    def pretty_text(self) -> str:
        if not self._format_python_code:
            return _config_text(self)
        unformatted = copy.copy(self)
        super(Config, unformatted).__setattr__('_format_python_code', False)
        key = _config_text(unformatted)
        memo = self.__dict__.get('_formatted')
        if memo is None or memo[0] != key:
            memo = (key, _config_text(self))
            super(Config, self).__setattr__('_formatted', memo)
        return memo[1]
