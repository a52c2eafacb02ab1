"""The interface every encoder implements: pooled features, per-stage features, re-init.

Methods that act per depth (AIM runs the first blocks on prototypes and single
blocks functionally; D&R re-initialises one stage; OGM-GE/G2D group the conv
weights) talk to encoders only through this interface, so they work for every
encoder and never decide anything from parameter names.

Two layouts appear here:

* the *stage layout* is sample-major: one leading batch dim ``B``, then whatever
  the encoder keeps per sample (ResNet18 on frames: ``(B, T, C, H, W)``, so all
  frames of a sample stay together and ``out.flatten(1)`` is one row per sample).
  ``prepare``, ``forward_stages``, ``run_stage`` and ``pool`` speak it;
* the *module layout* is what the stage modules themselves consume (ResNet18 on
  frames: the frames folded into the batch, ``(B*T, C, H, W)``).
  ``to_module_layout`` / ``from_module_layout`` convert; they are the identity
  for encoders without a fold.

Sequence encoders (``SequenceEncoder``) carry the padding mask inside the
stage layout: a step tensor ``(B, T, C + 1)``, the features of each step then a
validity channel (``mmbal.structures.step_features``), so every stage input
and output stays one plain tensor.
"""
from abc import abstractmethod
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.model import BaseModule
from torch import nn
from torch.func import functional_call
from torch.nn.modules.conv import _ConvNd


class EncoderStage(nn.Module):
    """A view of one encoder stage: the encoder's own submodules, run in order.

    The members are registered under their paths in the encoder (placeholder
    containers fill the path), so ``named_parameters()``, ``state_dict()`` and
    ``torch.func.functional_call`` use exactly the encoder's names
    (``stem.0.weight``, ``stages.0.1.conv2.weight``). The view owns nothing: it
    shares the modules and is never registered on the encoder, so the encoder's
    parameters and state_dict keys are unchanged. Its forward takes and returns
    the module layout.

    Args:
        members: ``(path in the encoder, module)`` pairs in run order.
    """

    def __init__(self, members: Sequence[Tuple[str, nn.Module]]) -> None:
        super().__init__()
        if not members:
            raise ValueError('an encoder stage needs at least one module')
        for path, module in members:
            parent: nn.Module = self
            *heads, leaf = path.split('.')
            for head in heads:
                if head not in parent._modules:
                    parent.add_module(head, nn.Module())
                parent = parent._modules[head]
            parent.add_module(leaf, module)
        # A plain list (not registered twice): the run order.
        self._run_order: List[nn.Module] = [module for _, module in members]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self._run_order:
            x = module(x)
        return x


class BaseEncoder(BaseModule):
    """Maps one modality's input to ``(B, out_channels)`` through ``num_stages`` stages.

    ``forward(x) == pool(forward_stages(x)[-1])`` holds bit for bit: forward is
    implemented that way. Subclasses implement ``stage_members`` (which of their
    submodules form each stage), ``prepare`` (input checks and the stage layout
    of stage 0's input) and ``pool``; encoders that fold samples for their
    modules override ``to_module_layout`` / ``from_module_layout``.

    Initialisation: ``init_weights()`` re-initialises on every call (see there).
    Subclasses put the init they apply at construction, on top of torch's
    per-layer defaults, in ``_init_defaults``.

    Attributes:
        out_channels: Size of the pooled feature that enters the fusion.
    """

    out_channels: int

    # ----------------------------------------------------------------- stages
    @abstractmethod
    def stage_members(self) -> List[List[nn.Module]]:
        """For each stage in depth order, its submodules in run order.

        Every parameter of the encoder must belong to exactly one stage.
        """

    @property
    def num_stages(self) -> int:
        """Number of stages (AIM's blocks, D&R's re-init units)."""
        return len(self.stage_members())

    def stage_channels(self) -> List[int]:
        """Channels of each stage's output: dim 1 of the module layout (MMTM's squeeze).

        Encoders that do not declare them cannot carry in-encoder fusion.
        """
        raise NotImplementedError(f'{type(self).__name__} does not declare its stage '
                                  f'channels (stage_channels)')

    def stage_modules(self) -> List[EncoderStage]:
        """One ``EncoderStage`` view per stage, built on the fly (module layout)."""
        return self._views(self.stage_members())

    def stage_module(self, i: int) -> EncoderStage:
        """The view of stage ``i``; its names are the encoder's names.

        D&R can restore a stage from an encoder-level snapshot ``snap`` with
        ``stage.load_state_dict({k: snap[k] for k in stage.state_dict()})``.
        """
        members = self.stage_members()
        if not -len(members) <= i < len(members):
            raise IndexError(f'{type(self).__name__} has {len(members)} stages, asked for {i}')
        return self._views([members[i]])[0]

    def _views(self, stages: List[List[nn.Module]]) -> List[EncoderStage]:
        # Each member's path in the encoder, found by identity (never from names).
        paths = {id(m): name for name, m in self.named_modules()}
        return [EncoderStage([(paths[id(m)], m) for m in members]) for members in stages]

    def stage_parameters(self, i: int) -> Iterator[Tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of stage ``i``, names as in ``self.named_parameters()``."""
        return self.stage_module(i).named_parameters()

    def named_conv_weights(self) -> Iterator[Tuple[str, nn.Parameter]]:
        """``(name, weight)`` of every convolution (chosen by module type), in module order.

        The parameter group OGM-GE and G2D modulate ("conv weights"); empty for
        encoders without convolutions.
        """
        for name, module in self.named_modules():
            if isinstance(module, _ConvNd):
                yield f'{name}.weight', module.weight

    # ---------------------------------------------------------------- layouts
    @abstractmethod
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Check a raw input and return stage 0's input in the stage layout."""

    def to_module_layout(self, h: torch.Tensor) -> Tuple[torch.Tensor, Any]:
        """Stage layout -> module layout; returns the tensor and what undoes the fold."""
        return h, None

    def from_module_layout(self, y: torch.Tensor, fold: Any) -> torch.Tensor:
        """Module layout -> stage layout, given ``fold`` from ``to_module_layout``."""
        return y

    @abstractmethod
    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """The head end: last stage's output (stage layout) -> ``(B, out_channels)``."""

    # --------------------------------------------------------------- forwards
    def forward_stages(self, x: torch.Tensor, upto: Optional[int] = None) -> List[torch.Tensor]:
        """Raw (unpooled) outputs of the first ``upto`` stages (all if None), stage layout.

        Args:
            x: A raw input, as ``forward`` takes it.
            upto: How many stages to run (AIM's "first d blocks"), 0..num_stages.
        Returns:
            ``upto`` tensors; entry ``i`` is stage ``i``'s output and stage ``i+1``'s input.
        """
        stages = self.stage_modules()
        n = len(stages) if upto is None else upto
        if not 0 <= n <= len(stages):
            raise ValueError(f'upto={upto}; {type(self).__name__} has {len(stages)} stages')
        z, fold = self.to_module_layout(self.prepare(x))
        outputs = []
        for stage in stages[:n]:
            z = stage(z)
            outputs.append(self.from_module_layout(z, fold))
        return outputs

    def run_stage(self, i: int, h: torch.Tensor,
                  params: Optional[Mapping[str, torch.Tensor]] = None) -> torch.Tensor:
        """Stage ``i`` applied to its input, both in the stage layout.

        Args:
            i: Stage index.
            h: Stage ``i``'s input: ``prepare(x)`` for stage 0, else stage
                ``i-1``'s output from ``forward_stages``.
            params: Tensors to use instead of the stage's own (through
                ``torch.func.functional_call``), keyed by the encoder's names
                (``stage_parameters(i)`` / the stage's ``named_buffers()``); the
                ones left out are the module's own. Buffers left out are the
                module's own and are updated in place in train mode (BN running
                statistics): pass them, or run in eval mode, to avoid that.
                During the call the encoder's modules hold the given tensors
                (torch.func swaps them in and back).
        Returns:
            Stage ``i``'s output (stage layout).
        """
        stage = self.stage_module(i)
        z, fold = self.to_module_layout(h)
        if params is None:
            return self.from_module_layout(stage(z), fold)
        known = set(stage.state_dict(keep_vars=True))
        unknown = sorted(set(params) - known)
        if unknown:
            raise KeyError(f'{type(self).__name__} stage {i} has no tensors named {unknown}')
        return self.from_module_layout(functional_call(stage, dict(params), (z,)), fold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x, a raw input (see the subclass). Returns: (B, out_channels)."""
        return self.pool(self.forward_stages(x)[-1])

    # ----------------------------------------------------------------- init
    def _init_defaults(self) -> None:
        """Init the encoder applies at construction on top of torch's layer defaults."""

    def init_default_weights(self) -> None:
        """Re-draw the weights (and reset the buffers) a fresh construction has.

        Every layer's own ``reset_parameters`` runs in module order (torch's
        default draw; BN also resets its running statistics), then
        ``_init_defaults``. Module order is construction order in these encoders,
        so from the same RNG state this reproduces a freshly built encoder
        bit for bit (the tests pin it).
        """
        for module in self.modules():
            reset = getattr(module, 'reset_parameters', None)
            if module is not self and callable(reset):
                reset()
        self._init_defaults()

    def init_weights(self) -> None:
        """Re-initialise: the construction-time init, then ``init_cfg`` if given.

        Every call re-initialises (a reset, not mmengine's one-shot): the
        defaults are re-drawn and mmengine's initialisers for ``init_cfg`` run
        again (``Pretrained`` last). ``is_init`` is still set afterwards, so a
        parent module's mmengine recursion skips an encoder already initialised.
        """
        self.init_default_weights()
        self._is_init = False
        super().init_weights()
