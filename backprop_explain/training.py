"""Training: several SGD steps (mini-batches, epochs, momentum) through the fast path.

The symbolic engine writes the first step out in full (derivation.derive on the first
mini-batch); every step, the first included, is computed here by the NumPy fast path and
updated by derivation.update_parameters (the spec's optimizer, optimizers.py:
torch.optim.SGD's rule, with momentum). The result is plain data: the loss of every
step, the batches used and the final parameters.

Schedule: the examples are taken in the spec's order (no shuffling, so a run is
reproducible), ``batch_size`` at a time, the last batch of an epoch smaller when the
examples do not divide evenly (as a PyTorch DataLoader with shuffle=False,
drop_last=False). Without a batch size every step uses every example. ``epochs`` sets the
number of steps to epochs × batches per epoch; otherwise ``steps`` is the number of steps.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from typing import TYPE_CHECKING

from .derivation import Solution, derive, update_parameters
from .errors import SpecError
from .limits import check_training
from .progress import task
from .spec import NetworkSpec, smallest_batch_error

if TYPE_CHECKING:
    from .fastpath import FastNetwork


@dataclass
class TrainingStep:
    step: int  # 1-based
    epoch: int  # 1-based
    examples: list[int]  # 1-based positions of the batch's examples in the spec
    loss: float  # the batch's loss before this step's update (mean or sum, as the spec)
    parameters: dict[str, float]  # after this step's update


@dataclass
class TrainingRun:
    steps: list[TrainingStep]
    batch_size: int
    epochs: int | None
    optimizer: str  # the spec's (optimizers.py), with its settings
    optimizer_settings: dict
    reduction: str
    loss_after: float  # on every example (mean or sum), after the last step; nan if diverged
    n_examples: int
    buffers: dict = dataclasses.field(default_factory=dict)  # running statistics at the end
    diverged_at: int | None = None  # the step whose loss overflowed (the run stopped there)
    initial: dict | None = None  # the parameters before the first step

    @property
    def history(self) -> list[float]:
        return [s.loss for s in self.steps]

    @property
    def parameters(self) -> dict[str, float]:
        return self.steps[-1].parameters if self.steps else dict(self.initial or {})


def with_schedule(spec: NetworkSpec, steps: int | None = None, epochs: int | None = None,
                  batch_size: int | None = None) -> NetworkSpec:
    """The spec with its training schedule overridden (the command line's --steps, --epochs,
    --batch-size); ``steps`` and ``epochs`` replace each other."""
    changes = {}
    if steps is not None:
        changes.update(steps=steps, epochs=None)
    if epochs is not None:
        changes.update(epochs=epochs, steps=1)
    if batch_size is not None:
        changes["batch_size"] = batch_size
    return dataclasses.replace(spec, **changes) if changes else spec


def batches(spec: NetworkSpec) -> list[tuple[int, list[int]]]:
    """(epoch, 0-based example indices) of every step."""
    n = len(spec.examples)
    size = spec.batch_size or n
    if size > n:
        raise SpecError(spec.source, "training.batch_size",
                        f"a batch size of at most {n} (the number of examples), got {size}")
    if spec.epochs is not None and spec.steps != 1:
        raise SpecError(spec.source, "training",
                        "either steps or epochs (epochs sets the number of steps), not both")
    per_epoch = math.ceil(n / size)
    total = spec.epochs * per_epoch if spec.epochs is not None else spec.steps
    check_training(spec, total, size)  # before listing 10**18 steps
    schedule = [(k // per_epoch + 1, list(range((k % per_epoch) * size,
                                                min((k % per_epoch + 1) * size, n))))
                for k in range(total)]
    for _, indices in schedule[:per_epoch]:  # a layer may need several examples per batch
        error = smallest_batch_error(spec.layers, len(indices))
        if error:
            raise SpecError(spec.source, "training.batch_size", error)
    return schedule


def is_training(spec: NetworkSpec) -> bool:
    """Whether the spec asks for more than one plain full-batch step."""
    return (spec.steps > 1 or spec.epochs is not None
            or (spec.batch_size is not None and spec.batch_size < len(spec.examples)))


def train(spec: NetworkSpec, network: FastNetwork | None = None) -> TrainingRun:
    """Run every SGD step of the spec's schedule through the fast path."""
    import numpy as np  # here, not at the top: a single derived step needs no NumPy

    from .fastpath import FastNetwork
    schedule = batches(spec)
    network = network or FastNetwork(spec)
    x = np.array([np.reshape(e.inputs, network.input_shape) for e in spec.examples])
    t = np.array([e.targets for e in spec.examples])
    parameters = dict(spec.parameters)
    state: dict = {}  # the optimizer's, from step to step (velocities, moments)
    buffers = dict(spec.buffers)  # the layers' running statistics, from step to step
    steps = []
    diverged_at = None
    with np.errstate(all="ignore"), task("SGD steps", len(schedule),
                                         long=len(schedule) >= 20_000) as advance:
        for k, (epoch, indices) in enumerate(schedule):
            result = network.run(x[indices], t[indices], parameters, spec.reduction,
                                 examples=indices, buffers=buffers)
            gradients = {name: float(g) for name, g in result.gradients.items()}
            if not (math.isfinite(result.loss) and all(map(math.isfinite, gradients.values()))):
                diverged_at = k + 1  # the loss overflowed: a result to say, not to print
                break
            buffers.update({name: float(value) for name, value in result.buffers.items()})
            _, parameters = update_parameters(parameters, gradients, spec, state)
            steps.append(TrainingStep(k + 1, epoch, [i + 1 for i in indices],
                                      float(result.loss), parameters))
            advance(1)
        final = float(network.run(x, t, parameters, spec.reduction, gradients=False,
                                  buffers=buffers).loss)
    if not math.isfinite(final):
        diverged_at = diverged_at or len(steps) + 1
    return TrainingRun(steps, spec.batch_size or len(spec.examples), spec.epochs,
                       spec.optimizer, spec.optimizer_settings, spec.reduction,
                       final if diverged_at is None else math.nan, len(spec.examples), buffers,
                       diverged_at, dict(spec.parameters))


def first_step(spec: NetworkSpec) -> NetworkSpec:
    """The spec of the step a worked solution derives in full: on the first mini-batch."""
    if not is_training(spec):
        return spec
    return dataclasses.replace(spec, examples=[spec.examples[i] for i in batches(spec)[0][1]])


def derive_training(spec: NetworkSpec) -> Solution:
    """The worked solution: the first step derived in full on the first mini-batch, and,
    when the spec asks for several steps, the whole run (``solution.training``) with the
    loss of every step in ``solution.history``."""
    if not is_training(spec):
        return derive(spec)
    solution = derive(first_step(spec))
    run = train(spec)
    solution.training = run
    solution.history = run.history
    return solution
