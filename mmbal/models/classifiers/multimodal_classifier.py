"""Encoders -> fusion neck -> head, for any number of modalities."""
import copy
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel, ModuleDict

from mmbal.models.utils import LOGIT_MODES, GradientGate, ModalityOutputs
from mmbal.registry import MODELS

TASKS = ('classification', 'regression')


def _fill_channels(cfg: dict, key: str, expected, owner: str, source: str) -> dict:
    """Set ``cfg[key]`` to ``expected`` or check that the configured value equals it."""
    cfg = copy.deepcopy(dict(cfg))
    given = cfg.get(key)
    if given is None:
        cfg[key] = expected
    elif isinstance(expected, dict):
        if list(given) != list(expected):
            raise ValueError(f'{owner}: {key} names modalities {list(given)} but the '
                             f'encoders are {list(expected)} (in this order)')
        for m, dim in expected.items():
            if given[m] != dim:
                raise ValueError(f'{owner}: {key}[{m!r}]={given[m]} but {source} {m!r} '
                                 f'outputs {dim} channels')
    elif given != expected:
        raise ValueError(f'{owner}: {key}={given} but {source} outputs {expected} channels')
    return cfg


@MODELS.register_module()
class MultimodalClassifier(BaseModel):
    """Multimodal classifier; with one modality it is the unimodal model.

    Args:
        encoders: ``{modality: backbone cfg}``; the order is the modality order
            every order-dependent formula uses.
        fusion: Fusion neck cfg; ``in_channels`` is filled from the encoders.
        head: Head cfg (``in_channels`` filled from the fusion), or None to
            use the fusion's output as the logits (late fusion; the reference
            "sum" model with ``out_channels = num_classes``).
        loss: Loss on the fused logits.
        modality_logits: How per-modality logits are computed for metrics and
            the training log: 'analytic', 'probe', or None (not computed).
        train_accuracy: Log batch accuracy of the fused output and of each
            modality every iteration (regression: their mean absolute error).
        task: ``'classification'`` or ``'regression'``: one output unit, a loss
            with a ``prediction(output)`` method (:class:`RegressionLoss`), and
            ``predict`` / the train log report that prediction, not logits.
        data_preprocessor: Cfg or module; defaults to ``MultimodalDataPreprocessor``.
        encoder_fusion: In-encoder fusion cfg (``MMTMFusion``), or None: a module
            that runs the encoders together, exchanging information between
            their stages; ``stage_channels`` is filled from the encoders. Every
            pass then encodes all modalities with gradient.
    """

    def __init__(self, encoders: Dict[str, dict], fusion: dict, head: Optional[dict] = None,
                 loss: dict = dict(type='CrossEntropyLoss'),
                 modality_logits: Optional[str] = 'analytic',
                 train_accuracy: bool = True, task: str = 'classification',
                 data_preprocessor: Optional[dict] = None,
                 encoder_fusion: Optional[dict] = None, init_cfg=None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='MultimodalDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            # Built through mmbal's registry, so no default scope is needed.
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not encoders:
            raise ValueError('MultimodalClassifier needs at least one encoder')
        self.modalities: List[str] = list(encoders)
        # mmengine's ModuleDict, so that init_weights() reaches the encoders.
        self.encoders = ModuleDict({m: MODELS.build(cfg) for m, cfg in encoders.items()})
        self.encoder_fusion = None
        if encoder_fusion is not None:
            stage_channels = {m: enc.stage_channels() for m, enc in self.encoders.items()}
            self.encoder_fusion = MODELS.build(_fill_channels(
                encoder_fusion, 'stage_channels', stage_channels, encoder_fusion.get('type'),
                'the stages of encoder'))
        dims = {m: enc.out_channels for m, enc in self.encoders.items()}
        fusion_cfg = _fill_channels(fusion, 'in_channels', dims, fusion.get('type'), 'encoder')
        self.fusion = MODELS.build(fusion_cfg)
        if self.fusion.outputs_logits and head is not None:
            raise ValueError(f'{fusion["type"]} ends in class logits; set head=None')
        self.head = None
        if head is not None:
            head_cfg = _fill_channels(head, 'in_channels', self.fusion.out_channels,
                                      head.get('type'), f'fusion {fusion["type"]}')
            self.head = MODELS.build(head_cfg)
        self.loss_module = MODELS.build(loss)
        if modality_logits not in (*LOGIT_MODES, None):
            raise ValueError(f'modality_logits={modality_logits!r}; expected one of '
                             f'{LOGIT_MODES} or None')
        if modality_logits == 'analytic' and not self.fusion.supports_analytic:
            raise ValueError(f'{fusion["type"]} has no analytic per-modality logits; '
                             f"set model.modality_logits='probe' (or None)")
        self.modality_logits = modality_logits
        self.train_accuracy = train_accuracy
        if task not in TASKS:
            raise ValueError(f'MultimodalClassifier: task={task!r}; expected one of {TASKS}')
        if task == 'regression':
            if self.num_classes != 1:
                raise ValueError(f'MultimodalClassifier: task=regression needs one output '
                                 f'unit; the model outputs {self.num_classes}')
            if not callable(getattr(self.loss_module, 'prediction', None)):
                raise ValueError(f'MultimodalClassifier: task=regression needs a loss with '
                                 f'a prediction(output) method (e.g. RegressionLoss); got '
                                 f'{type(self.loss_module).__name__}')
        self.task = task
        print_log(f'MultimodalClassifier: modalities {self.modalities}, fusion '
                  f'{fusion["type"]}, per-modality logits: {modality_logits}', logger='current')

    @property
    def num_classes(self) -> int:
        """The classifier's output size: the head's, or the fusion's when it classifies."""
        if self.head is not None:
            return int(self.head.num_classes)
        k = getattr(self.fusion, 'out_channels', None)
        if k is None:
            raise ValueError(f'cannot read the number of classes from '
                             f'{type(self.fusion).__name__} (no head, no out_channels)')
        return int(k)

    def classify(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Fused logits ``(B, num_classes)`` from ``{m: (B, C_m)}`` features."""
        fused = self.fusion(features)
        return fused if self.head is None else self.head(fused)

    def encode(self, inputs: Dict[str, torch.Tensor],
               modalities: Optional[Sequence[str]] = None) -> Dict[str, torch.Tensor]:
        """Encoder outputs ``{m: (B, C_m)}`` of ``modalities`` (default: all, config order)."""
        modalities = self.modalities if modalities is None else list(modalities)
        if self.encoder_fusion is not None:
            _check_inputs(inputs, self.modalities)
            features = self.encoder_fusion(self.encoders, inputs)
            return {m: features[m] for m in modalities}
        _check_inputs(inputs, modalities)
        return {m: self.encoders[m](inputs[m]) for m in modalities}

    def run(self, inputs: Dict[str, torch.Tensor], trainable: Optional[Sequence[str]] = None,
            target_only: Sequence[str] = (), logits: Optional[str] = None,
            isolated: Sequence[str] = ()) -> ModalityOutputs:
        """One forward pass, returning the record the training step and metrics read.

        Every trainable feature passes through a fresh gradient gate of this
        pass, so every output computed from it sends its gradient through the
        gate, and a later pass cannot change this pass's coefficients.

        Args:
            inputs: ``{m: tensor}`` after the data preprocessor.
            trainable: Modalities encoded with gradient (default: all).
            target_only: Modalities encoded under ``no_grad`` (detached
                features; their encoders keep ``grad=None``). Modalities in
                neither list are not encoded at all.
            logits: Per-modality logit mode to compute now, inside the forward
                (see ``PassPlan.logits``); otherwise they are computed on demand.
            isolated: Modalities whose features must carry no information from
                the other modalities' inputs (see ``PassPlan.isolated``); without
                an in-encoder fusion every feature already does.
        """
        trainable = self.modalities if trainable is None else list(trainable)
        target_only = list(target_only)
        isolated = list(isolated)
        unknown = [m for m in trainable + target_only + isolated if m not in self.modalities]
        if unknown:
            raise ValueError(f'modalities {unknown} are not encoded by this model '
                             f'({self.modalities})')
        _check_inputs(inputs, [m for m in self.modalities
                               if m in trainable or m in target_only])
        features, gates = {}, {}
        encoded = None
        if self.encoder_fusion is not None:
            if sorted(trainable) != sorted(self.modalities) or target_only:
                raise ValueError(
                    f'{type(self.encoder_fusion).__name__} runs the encoders together, so '
                    f'every pass trains all modalities {self.modalities}; this pass trains '
                    f'{trainable} with target_only {target_only}')
            encoded = self.encoder_fusion(self.encoders, inputs, isolated)
        for m in self.modalities:  # config order; each feature is gated as it is made
            if m in trainable:
                gates[m] = GradientGate()
                feature = self.encoders[m](inputs[m]) if encoded is None else encoded[m]
                features[m] = gates[m](feature)
            elif m in target_only:
                with torch.no_grad():
                    features[m] = self.encoders[m](inputs[m]).detach()
        fused = self.classify(features) if len(features) == len(self.modalities) else None
        outputs = ModalityOutputs(features, fused, gates, inputs=inputs, fusion=self.fusion,
                                  classify=self.classify, head=self.head)
        if logits is not None:
            outputs.logits(logits)
        return outputs

    def forward(self, inputs: Dict[str, torch.Tensor],
                data_samples: Optional[Dict[str, torch.Tensor]] = None,
                mode: str = 'tensor', trainable: Optional[Sequence[str]] = None,
                target_only: Sequence[str] = (), logits: Optional[str] = None,
                isolated: Sequence[str] = ()):
        """``mode``: 'tensor' (fused logits), 'outputs' (the pass record the
        training step uses), 'loss' (base loss and train metrics, for plain
        MMEngine loops), 'predict' (per-sample results)."""
        outputs = self.run(inputs, trainable, target_only, logits, isolated)
        if mode == 'outputs':
            return outputs
        if mode == 'tensor':
            return outputs.fused_logits
        if mode == 'loss':
            return {**self.loss(outputs, data_samples), **self.train_metrics(outputs, data_samples)}
        if mode == 'predict':
            return self.predict(outputs, data_samples)
        raise ValueError(f'invalid mode {mode!r}; expected outputs, loss, predict or tensor')

    def loss(self, outputs: ModalityOutputs,
             data_samples: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The base loss ``{'loss': loss(f, y)}`` on the fused logits."""
        if outputs.fused_logits is None:
            raise ValueError(f'the base loss needs the fused logits, but this pass encoded '
                             f'only {outputs.modalities} of {self.modalities}; a method that '
                             f'trains on a subset of modalities must switch the base loss off')
        return {'loss': self.loss_module(outputs.fused_logits, data_samples['gt_label'])}

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        """What ``predict`` reports for an output: the logits (classification), the
        loss's ``(B,)`` prediction (regression, e.g. ``sigmoid(f)``)."""
        return self.loss_module.prediction(output) if self.task == 'regression' else output

    @torch.no_grad()
    def train_metrics(self, outputs: ModalityOutputs,
                      data_samples: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Batch accuracy (regression: mean absolute error of the prediction) of the
        fused output and of each modality (logged, not trained)."""
        if not self.train_accuracy:
            return {}
        labels = data_samples['gt_label']
        if self.task == 'regression':
            name = 'mae'

            def score(out: torch.Tensor) -> torch.Tensor:
                return (self.prediction(out) - labels.reshape(-1).to(out.dtype)).abs().mean()
        else:
            name = 'acc'

            def score(out: torch.Tensor) -> torch.Tensor:
                return _accuracy(out, labels)
        metrics = {}
        complete = outputs.fused_logits is not None
        if complete:
            metrics[f'{name}/fused'] = score(outputs.fused_logits)
        # A pass of some modalities only (sub-steps) still has analytic per-modality logits.
        if self.modality_logits is not None and (complete or self.modality_logits == 'analytic'):
            for m, s in outputs.logits(self.modality_logits).items():
                metrics[f'{name}/{m}'] = score(s)
        return metrics

    def predict(self, outputs: ModalityOutputs,
                data_samples: Optional[Dict[str, torch.Tensor]] = None) -> List[dict]:
        """One dict per sample: fused ``pred_score`` (C,), ``modality_scores`` and labels.

        Regression: ``pred_score`` is ``(1,)``, the loss's prediction (:meth:`prediction`).
        """
        def scores(out: torch.Tensor) -> torch.Tensor:
            return self.prediction(out.detach()).float().reshape(len(out), -1).cpu()

        fused = scores(outputs.fused_logits)
        per_mod = {}
        if self.modality_logits is not None:
            per_mod = {m: scores(s) for m, s in outputs.logits(self.modality_logits).items()}
        results = []
        labels = _to_list(data_samples, 'gt_label', len(fused))
        indices = _to_list(data_samples, 'sample_idx', len(fused))
        for i in range(len(fused)):
            result = {'pred_score': fused[i],
                      'modality_scores': {m: s[i] for m, s in per_mod.items()}}
            if labels is not None:
                result['gt_label'] = labels[i]
            if indices is not None:
                result['sample_idx'] = indices[i]
            results.append(result)
        return results


def _check_inputs(inputs: Dict[str, torch.Tensor], modalities: Sequence[str]) -> None:
    missing = [m for m in modalities if m not in inputs]
    if missing:
        raise KeyError(f'the batch lacks modalities {missing} that the model encodes; '
                       f'it has {list(inputs)}')


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) == labels).float().mean() * 100


def _to_list(samples: Optional[dict], key: str, size: int) -> Optional[Sequence[int]]:
    if not samples or key not in samples:
        return None
    values = samples[key]
    values = values.tolist() if isinstance(values, torch.Tensor) else list(values)
    if len(values) != size:
        raise ValueError(f'data_samples[{key!r}] has {len(values)} entries for a batch of {size}')
    return values
