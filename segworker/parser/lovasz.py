"""The Lovász-softmax loss: a training surrogate of the IoU the masks are scored by.

Berman, Rannen Triki and Blaschko, *"The Lovász-Softmax loss: A tractable
surrogate for the optimization of the intersection-over-union measure in
neural networks"*, CVPR 2018. For one class of one image, the pixels' errors
``|is the class - probability of the class|`` are sorted, largest first, and
weighted by how much each one, added in that order, raises the Jaccard loss
``1 - IoU``. On hard (0/1) probabilities this is exactly ``1 - IoU`` of the
class; in between it is the tightest convex extension of it, so its gradient
pushes on the pixels that cost the most IoU, per image, whatever the class's
size. The soft dice it can replace (:func:`segworker.parser.train.loss_fn`)
counts pixels over the whole batch instead, so a large garment outweighs a
small one there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def jaccard_steps(sorted_truth: torch.Tensor) -> torch.Tensor:
    """How much ``1 - IoU`` rises with each pixel along the last dimension of
    ``sorted_truth`` (1 where the pixel is the class, 0 where not; in the
    order of falling error) counted as wrong after the ones before it."""
    total = sorted_truth.sum(-1, keepdim=True)
    intersection = total - sorted_truth.cumsum(-1)
    union = total + (1.0 - sorted_truth).cumsum(-1)
    jaccard = 1.0 - intersection / union.clamp_min(1.0)
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)


def lovasz_softmax(probs: torch.Tensor, target: torch.Tensor, classes: Sequence[int],
                   class_weights: Sequence[float] | None = None) -> torch.Tensor:
    """The weighted mean Lovász-softmax loss of ``classes`` over a batch.

    ``probs``: ``B x C x H x W`` softmax probabilities; ``target``: ``B x H x W``
    class ids. Each (image, class) pair where the class is present in the
    image's target counts once, times its class's weight (1 each by default);
    a class absent from an image is left to the cross-entropy there, as a
    class that is not in the photo has no IoU to lose. No pair at all: 0
    (with the graph kept, so a backward pass still runs)."""
    batch, ids = probs.shape[0], list(classes)
    weights = torch.tensor(list(class_weights) if class_weights is not None else [1.0] * len(ids),
                           dtype=probs.dtype)
    # All (image, class) pairs in one sort: one pass, and one scatter backwards.
    wanted = torch.tensor(ids, device=target.device).reshape(1, -1, 1)
    truth = (target.reshape(batch, 1, -1) == wanted).to(probs.dtype)
    errors = (truth - probs[:, ids].reshape(batch, len(ids), -1)).abs()
    errors, order = torch.sort(errors, dim=-1, descending=True)
    steps = jaccard_steps(torch.gather(truth, -1, order))
    counted = weights.reshape(1, -1) * (truth.sum(-1) > 0)
    if not bool(counted.any()):
        return probs.sum() * 0.0
    return ((errors * steps).sum(-1) * counted).sum() / counted.sum()
