"""The two linear maps a decoupling module can use between a block's parameters and its latent.

* :class:`DenseMap`: the literal fully connected layer (``out x in`` weights);
* :class:`KroneckerMap`: still one linear layer ``y = W x + b``, with
  ``W = sum_r A_r kron B_r`` (restricted to the first ``out`` rows and ``in``
  columns of the padded grid), applied as reshapes and two small matmuls;
  ``W`` is never materialised. Its bias is full size (``out`` entries).

Vectors are laid on a row-major grid ``(n1, n2)`` (zero-padded to ``n1 * n2``);
then ``(A kron B) vec(X) = vec(A X B^T)`` with ``A (a1, n1)``, ``B (a2, n2)``.
"""
import math
from typing import Tuple

import torch
from torch import nn

MAPS = ('kron', 'dense')


def grid(n: int) -> Tuple[int, int]:
    """A near-square row-major grid ``(rows, cols)`` holding ``n`` entries (padded)."""
    if n < 1:
        raise ValueError(f'grid: size {n}; expected >= 1')
    cols = math.isqrt(n - 1) + 1  # ceil(sqrt(n))
    return -(-n // cols), cols


class DenseMap(nn.Module):
    """``y = W x + b`` with a full ``(out_features, in_features)`` weight (nn.Linear init)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (in_features,). Returns: (out_features,)."""
        return self.linear(x)

    def weight_matrix(self) -> torch.Tensor:
        return self.linear.weight

    @property
    def bias(self) -> torch.Tensor:
        return self.linear.bias


class KroneckerMap(nn.Module):
    """``y = (sum_r A_r kron B_r) x + b``, one linear layer with ``rank`` Kronecker terms.

    Init (ours): the factors are N(0, s^2) with ``s = (3 * rank * in)^(-1/4)``, so
    each entry of ``W`` has the variance of nn.Linear's default uniform init,
    ``1 / (3 * in)``; the bias is nn.Linear's ``U(-1/sqrt(in), 1/sqrt(in))``.

    Args:
        in_features: Input size N_in.
        out_features: Output size N_out.
        rank: Number of Kronecker terms R.
    """

    def __init__(self, in_features: int, out_features: int, rank: int = 8) -> None:
        super().__init__()
        if int(rank) != rank or rank < 1:
            raise ValueError(f'KroneckerMap: rank={rank!r}; expected an int >= 1')
        self.in_features, self.out_features, self.rank = in_features, out_features, int(rank)
        self.in_grid, self.out_grid = grid(in_features), grid(out_features)
        (n1, n2), (a1, a2) = self.in_grid, self.out_grid
        self.A = nn.Parameter(torch.empty(self.rank, a1, n1))
        self.B = nn.Parameter(torch.empty(self.rank, a2, n2))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = (3.0 * self.rank * self.in_features) ** -0.25
        nn.init.normal_(self.A, std=std)
        nn.init.normal_(self.B, std=std)
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (in_features,). Returns: (out_features,)."""
        if x.shape != (self.in_features, ):
            raise ValueError(f'KroneckerMap: input of shape {tuple(x.shape)}; expected '
                             f'({self.in_features},)')
        n1, n2 = self.in_grid
        X = torch.cat([x, x.new_zeros(n1 * n2 - self.in_features)]).view(n1, n2)
        # sum_r A_r X B_r^T as (a1, R*n2) @ (R*n2, a2): no R-fold copy of the output.
        AX = torch.einsum('rik,kl->irl', self.A, X).reshape(self.A.shape[1], -1)
        Y = AX @ self.B.permute(0, 2, 1).reshape(-1, self.B.shape[1])
        return Y.reshape(-1)[:self.out_features] + self.bias

    def weight_matrix(self) -> torch.Tensor:
        """``W`` materialised (tests and tiny blocks only): ``(out_features, in_features)``."""
        W = sum(torch.kron(a, b) for a, b in zip(self.A, self.B))
        return W[:self.out_features, :self.in_features]


def build_map(kind: str, in_features: int, out_features: int, rank: int = 8) -> nn.Module:
    """``'kron'`` (default of AIM, ours) or ``'dense'`` (literal)."""
    if kind == 'kron':
        return KroneckerMap(in_features, out_features, rank)
    if kind == 'dense':
        return DenseMap(in_features, out_features)
    raise ValueError(f'pdm_map={kind!r}; expected one of {MAPS}')
