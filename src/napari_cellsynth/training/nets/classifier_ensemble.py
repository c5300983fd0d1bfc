"""Several trained classifiers of one task as one network (a deep ensemble).

Runs that differ only in their seed disagree a lot when the rare class has a few dozen examples
(docs/results.md §11: the ROC-AUC of single translocation runs spreads by ± 0.1); the mean of their
probabilities is steadier and better than a typical member.  The ensemble's ``logits`` are the log of
the members' mean softmax, so a softmax of them gives that mean back; its ``features`` are the
members' penultimate features side by side (what the UMAP filter reads).
"""

from __future__ import annotations

import torch
from torch import nn


class ClassifierEnsemble(nn.Module):
    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.feature_dim = sum(m.feature_dim for m in members)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = [member(x) for member in self.members]
        probability = torch.stack([logits.softmax(1) for logits, _ in outputs]).mean(0)
        return probability.clamp_min(1e-12).log(), torch.cat([features for _, features in outputs], 1)
