"""Cross-task synergy: an adversarial task discriminator on the task-invariant part, through gradient reversal.

The discriminator learns to tell which task a [SEG] signal came from using only the invariant part; the reversed
gradient teaches the projector to make that part carry no task identity, so what is task-specific must live in
the other part (which a plain task head is trained to read). VITRON describes this module; its published code
does not contain it.
"""

from __future__ import annotations

import torch
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.strength * grad, None


def reverse_gradient(x: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Identity going forward; multiplies the gradient by -strength going back (Ganin & Lempitsky, 2015)."""
    return _ReverseGradient.apply(x, strength)


class TaskDiscriminator(nn.Module):
    def __init__(self, part_dim: int, tasks: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(part_dim, hidden), nn.ReLU(), nn.Linear(hidden, tasks))

    def forward(self, invariant: torch.Tensor, strength: float) -> torch.Tensor:
        return self.net(reverse_gradient(invariant, strength))


class SynergyLoss(nn.Module):
    """Adversarial loss on the invariant part + task classification on the specific part."""

    def __init__(self, part_dim: int, tasks: int):
        super().__init__()
        self.discriminator = TaskDiscriminator(part_dim, tasks)
        self.task_head = nn.Linear(part_dim, tasks)

    def forward(self, invariant, specific, task_ids, strength: float) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        adversarial = F.cross_entropy(self.discriminator(invariant, strength), task_ids)
        specific_loss = F.cross_entropy(self.task_head(specific), task_ids)
        with torch.no_grad():
            guessed = self.discriminator.net(invariant).argmax(-1).eq(task_ids).float().mean()
        return {"synergy_adv": adversarial, "synergy_spec": specific_loss, "synergy_disc_acc": guessed}
