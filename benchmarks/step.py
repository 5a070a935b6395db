"""A whole training step (forward, loss, backward, optimizer step, BN buffer updates) as one call,
eager or captured in one CUDA graph.

Deep thin networks (ResNet-110/1202, pre-act ResNet-164) launch thousands of small kernels per
step; replaying them from a CUDA graph removes the host's launch cost. A graph needs static
shapes and addresses: the batch is copied into fixed input buffers, gradients live in the graph's
private memory pool.

    step = make_step(net, optimizer, loss_fn, images, labels, graph=True)  # eager on CPU
    loss = step(images, labels)  # a device tensor: reading it is the caller's choice
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

LossFn = Callable[[Tensor, Tensor], Tensor]  # (logits, labels) -> scalar loss
WARMUP_STEPS = 3  # eager steps on a side stream before capture: cudnn autotuning, allocator


class EagerStep:
    """zero_grad, forward (under autocast when `autocast_dtype` is set), loss, backward, step."""

    captured = False

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
                 autocast_dtype: Optional[torch.dtype] = None):
        self.net, self.optimizer, self.loss_fn = net, optimizer, loss_fn
        self.autocast_dtype = autocast_dtype

    def _forward_backward(self, images: Tensor, labels: Tensor, cache: bool = True) -> Tensor:
        device_type = images.device.type
        with torch.autocast(device_type, dtype=self.autocast_dtype or torch.bfloat16,
                            enabled=self.autocast_dtype is not None, cache_enabled=cache):
            logits = self.net(images)
        loss = self.loss_fn(logits.float(), labels)
        loss.backward()
        return loss

    def __call__(self, images: Tensor, labels: Tensor) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._forward_backward(images, labels)
        self.optimizer.step()
        return loss.detach()


class CapturedStep(EagerStep):
    """The eager step recorded once in a CUDA graph and replayed for every batch.

    Capture needs a few warm-up steps first; they run on copies of the state and are then undone
    (parameters, BN buffers and momentum restored in place), so replay k equals eager step k.
    The learning rate is read at capture: a float lr is fixed in the graph, a 0-dim CUDA tensor lr
    (fused SGD) follows later changes. torch's foreach SGD reads a tensor lr on the host, which
    capture forbids: use fused=True or a float lr."""

    captured = True

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
                 images: Tensor, labels: Tensor, autocast_dtype: Optional[torch.dtype] = None,
                 warmup: int = WARMUP_STEPS):
        super().__init__(net, optimizer, loss_fn, autocast_dtype)
        if images.device.type != "cuda":
            raise ValueError(f"a CUDA graph needs CUDA tensors, got images on {images.device}")
        self.images, self.labels = images.clone(), labels.clone()  # the graph's fixed inputs
        saved = [t.detach().clone() for t in self._state()]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                super().__call__(self.images, self.labels)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # grads are then allocated in the graph's pool
        with torch.cuda.graph(self.graph):
            # Autocast's weight cache must be off: cached casts would outlive the capture.
            self.loss = self._forward_backward(self.images, self.labels, cache=False).detach()
            self.optimizer.step()
        with torch.no_grad():
            for tensor, value in zip(self._state(), saved):
                tensor.copy_(value)
            for buffer in self._momentum_buffers():
                buffer.zero_()  # momentum * 0 + grad: exactly the first eager step's buffer

    def _state(self) -> list[Tensor]:
        return [*self.net.parameters(), *self.net.buffers()]

    def _momentum_buffers(self) -> list[Tensor]:
        return [s["momentum_buffer"] for s in self.optimizer.state.values()
                if s.get("momentum_buffer") is not None]

    def __call__(self, images: Tensor, labels: Tensor) -> Tensor:
        self.images.copy_(images, non_blocking=True)
        self.labels.copy_(labels, non_blocking=True)
        self.graph.replay()
        return self.loss


def make_step(net: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, images: Tensor,
              labels: Tensor, graph: bool = False,
              autocast_dtype: Optional[torch.dtype] = None) -> EagerStep:
    """The captured step when `graph` and the batch is on CUDA; otherwise the eager step (one log
    line says so when a graph was asked for)."""
    if graph and images.device.type == "cuda":
        return CapturedStep(net, optimizer, loss_fn, images, labels, autocast_dtype)
    if graph:
        log.warning("CUDA graph step needs a CUDA device; %s runs the eager step", images.device)
    return EagerStep(net, optimizer, loss_fn, autocast_dtype)
