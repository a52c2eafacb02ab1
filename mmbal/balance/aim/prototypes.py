"""AIM's depth-adaptive prototypes (DAP, eqs. 3-5).

Per modality, ``K`` learnable input-shaped prototypes ``P~_0`` (one per class,
init N(0, 1)) and a shape-preserving decoder ``Psi_dap``. They learn, with the
network frozen (BN in eval mode), from

* ``L_cls = CE(model(prototypes of every modality), [0, ..., K-1])`` and
* ``L_r = 1/(M K) sum_m sum_k || Psi_dap(p~_0^{m,k}) - X_bar^{m,k} ||_F^2``,
  ``X_bar`` the class-mean training input (:func:`class_mean_inputs`).

The depth-``d`` prototypes ``P_d`` are the first ``d`` encoder stages applied to
the prototypes, under ``no_grad`` and in eval mode, recomputed when asked.
"""
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mmbal.models.backbones.base_encoder import BaseEncoder
from ..dataset_pass import dataset_pass, eval_mode, mean_of, per_class_sums

MODEL_INPUTS = ('raw', 'decoded')


class ChannelDecoder(nn.Module):
    """``Psi_dap`` (ours): a 1x1 convolution over dim 1, initialised to the identity.

    Maps ``(K, C, ...)`` to the same shape: ``y[:, c] = sum_c' W[c, c'] x[:, c'] + b[c]``.
    For a feature-vector input ``(K, F)`` it is an ``F x F`` linear map.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum('dc,kc...->kd...', self.weight, x)
        return y + self.bias.view(1, -1, *([1] * (x.dim() - 2)))


class DepthAdaptivePrototypes(nn.Module):
    """The prototypes ``P~_0`` and decoders ``Psi_dap`` of every modality.

    Args:
        input_shapes: ``{modality: per-sample input shape}`` (after the data
            preprocessor, e.g. ``(1, 129, 63)``), in config order.
        num_classes: K.
        model_input: What the network sees, in ``L_cls`` and for ``P_d``:
            ``'raw'`` (default: ``P~_0``, as the method writes ``P_d``) or
            ``'decoded'`` (``Psi_dap(P~_0)``, the tensor ``L_r`` pulls to the
            class mean). Ours: the method does not say which.
    """

    def __init__(self, input_shapes: Mapping[str, Sequence[int]], num_classes: int,
                 model_input: str = 'raw') -> None:
        super().__init__()
        if model_input not in MODEL_INPUTS:
            raise ValueError(f'DepthAdaptivePrototypes: model_input={model_input!r}; '
                             f'expected one of {MODEL_INPUTS}')
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f'DepthAdaptivePrototypes: num_classes={num_classes!r}; '
                             f'expected an int >= 2')
        if not input_shapes:
            raise ValueError('DepthAdaptivePrototypes needs the input shape of at least '
                             'one modality')
        self.modalities: List[str] = list(input_shapes)
        self.num_classes, self.model_input = int(num_classes), model_input
        self.prototypes = nn.ParameterDict()
        self.decoders = nn.ModuleDict()
        for m, shape in input_shapes.items():
            shape = tuple(int(s) for s in shape)
            if not shape or min(shape) < 1:
                raise ValueError(f'DepthAdaptivePrototypes: input_shapes[{m!r}]={shape}; '
                                 f'expected a non-empty per-sample shape')
            self.prototypes[m] = nn.Parameter(torch.randn(self.num_classes, *shape))
            self.decoders[m] = ChannelDecoder(shape[0])

    def decoded(self, m: str) -> torch.Tensor:
        """``Psi_dap(P~_0^m)``: ``(K, *input_shape)``."""
        return self.decoders[m](self.prototypes[m])

    def model_inputs(self) -> Dict[str, torch.Tensor]:
        """``{m: (K, *input_shape)}``: what the network is run on (see ``model_input``)."""
        if self.model_input == 'decoded':
            return {m: self.decoded(m) for m in self.modalities}
        return {m: self.prototypes[m] for m in self.modalities}

    def losses(self, classify: Callable[[Dict[str, torch.Tensor]], torch.Tensor],
               class_means: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``loss_cls``, ``loss_r`` and ``loss = loss_cls + loss_r`` (eqs. 3-5).

        Args:
            classify: ``{m: (K, ...)} -> (K, K)`` logits of the frozen network,
                e.g. :func:`frozen_logits`.
            class_means: ``{m: X_bar^m (K, *input_shape)}`` from :func:`class_mean_inputs`.
        """
        missing = [m for m in self.modalities if m not in class_means]
        if missing:
            raise KeyError(f'DepthAdaptivePrototypes: no class means for {missing}')
        logits = classify(self.model_inputs())
        targets = torch.arange(self.num_classes, device=logits.device)
        loss_cls = F.cross_entropy(logits, targets)
        loss_r = 0.
        for m in self.modalities:
            decoded = self.decoded(m)
            mean = class_means[m].to(decoded)
            if mean.shape != decoded.shape:
                raise ValueError(f'DepthAdaptivePrototypes: class means of {m!r} have shape '
                                 f'{tuple(mean.shape)}; expected {tuple(decoded.shape)}')
            loss_r = loss_r + (decoded - mean).pow(2).sum()
        loss_r = loss_r / (len(self.modalities) * self.num_classes)
        return dict(loss_cls=loss_cls, loss_r=loss_r, loss=loss_cls + loss_r)

    @torch.no_grad()
    def depth_prototypes(self, m: str, encoder: BaseEncoder,
                         upto: Optional[int] = None) -> List[torch.Tensor]:
        """``[P_1, ..., P_upto]`` of modality ``m``: stage outputs on the prototypes.

        Eval mode (BN running statistics used, not updated), no graph. Entry
        ``i`` has stage ``i``'s per-sample output shape, led by K.
        """
        with eval_mode(encoder):
            return [p.detach() for p in encoder.forward_stages(self.model_inputs()[m], upto)]


def frozen_logits(model: nn.Module, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
    """The classifier's fused logits on ``inputs``, the network frozen.

    Eval mode (BN uses and never updates its running statistics; the training
    flags are restored) and detached parameters (``functional_call``), so a
    plain ``backward`` reaches ``inputs`` (the prototypes) and nothing of the
    network.
    """
    frozen = {n: p.detach() for n, p in model.named_parameters()}
    with eval_mode(model):
        return functional_call(model, frozen, (inputs, ), dict(mode='tensor'))


def class_mean_inputs(loader: Iterable, model: nn.Module, num_classes: int,
                      modalities: Optional[Sequence[str]] = None) -> Dict[str, torch.Tensor]:
    """``X_bar``: the class-mean input of every modality over a loader (one dataset pass).

    Args:
        loader: E.g. ``build_split_loader(cfg, 'train', pipeline='eval')``.
        model: Its data preprocessor prepares each batch (see ``dataset_pass``).
        num_classes: K.
        modalities: Default: ``model.modalities``.
    Returns:
        ``{m: (K, *input_shape)}`` float64, the same on every rank.
    """
    modalities = list(model.modalities if modalities is None else modalities)

    def sums(data):
        labels = data['data_samples']['gt_label']
        out = {}
        for m in modalities:
            if m not in data['inputs']:
                raise KeyError(f'class_mean_inputs: the batch lacks modality {m!r}; it has '
                               f'{list(data["inputs"])}')
            if not isinstance(data['inputs'][m], torch.Tensor):
                # A PaddedSequence: its length varies by batch, so there is no one input
                # shape for the class mean (and the prototypes) to have.
                raise TypeError(
                    f'class_mean_inputs: modality {m!r} arrives as a '
                    f'{type(data["inputs"][m]).__name__}, not a tensor of one shape; AIM '
                    f'needs every input of a modality at one shape (prototypes are '
                    f'input-shaped): give it fixed-length sequences (a (B, T, D) tensor)')
            out[f'sum/{m}'], counts = per_class_sums(data['inputs'][m], labels, num_classes)
        out['class_count'] = counts
        return out

    totals = dataset_pass(loader, sums, model=model)
    counts = totals['class_count']
    empty = [k for k in range(num_classes) if counts[k] == 0]
    if empty:
        raise ValueError(f'class_mean_inputs: classes {empty} have no sample in the loader; '
                         f'every class needs a mean input')
    return {m: mean_of(totals[f'sum/{m}'], counts) for m in modalities}
