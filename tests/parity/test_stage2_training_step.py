"""One stage-2 step against a test-side transcription of the reference's (src/train.py:L393-418 at a4d18c4).

The transcription: ``loss = mean_flat((model(x_t, t, y) - u_t) ** 2).mean()`` on the flow path
(src/stage2/transport/transport.py:L185-209; x_t = (1 - t) x + t eps, u_t = eps - x in this framework's
time convention, which the transport fixtures show equal to the reference's), ``backward``, global-norm
clipping at 1.0, AdamW, then the EMA of the parameters (src/utils/train_utils.py:L68). Our engine's step
(the seeded draws it is given, gradient accumulation over micro-batches, clipping, AdamW, EMA) must give the
same loss, gradients and EMA weights: 1e-6 on the loss, 1e-5 on gradients and weights.
"""

from __future__ import annotations

import copy

import torch

from rae_framework.config import OptimizerConfig
from rae_framework.engine import step_generator
from rae_framework.session import Session
from rae_stages.configs import TrainDenoiserStage
from rae_framework.data.datasets import rank_share
from rae_stages.train_denoiser import StepDraws, accumulate_gradients, build_stage2_state, optimizer_step

BATCH, LR, BETAS, CLIP, EMA_DECAY = 8, 1e-3, (0.9, 0.95), 1.0, 0.9


def setup():
    session = Session()
    torch.manual_seed(0)
    model = session.build("denoiser", "dit-dh", preset="dit-dh-tiny")
    schedule = session.build("schedule", "shifted-flow", {"latent_shape": [model.in_channels, model.input_size,
                                                                           model.input_size]})
    generator = torch.Generator().manual_seed(3)
    shape = (BATCH, model.in_channels, model.input_size, model.input_size)
    x, noise = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    y = torch.randint(0, model.num_classes, (BATCH,), generator=generator)
    t = schedule.sample_time(BATCH, generator=step_generator(0, 2, 0)).float()
    return model, schedule, x, y, StepDraws(noise, t, torch.zeros(BATCH, dtype=torch.bool))


def gradients(model) -> dict[str, torch.Tensor]:
    """Every parameter's gradient (zeros for those the step does not reach, e.g. an unused null-class row)."""
    return {name: param.grad.clone() if param.grad is not None else torch.zeros_like(param)
            for name, param in model.named_parameters()}


def reference_step(model, x, y, draws):
    """The transcription (see the module docstring); returns (loss, gradients, EMA weights)."""
    model, ema = copy.deepcopy(model), copy.deepcopy(model).requires_grad_(False)
    # fused, as the reference's build_optimizer (src/utils/optim_utils.py:L39) and our default
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, weight_decay=0.0, fused=True)
    optimizer.zero_grad(set_to_none=True)
    t = draws.t.view(-1, 1, 1, 1)
    x_t, u_t = (1 - t) * x + t * draws.noise, draws.noise - x
    loss = ((model(x_t, draws.t, y) - u_t) ** 2).mean(dim=(1, 2, 3)).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    grads = gradients(model)
    optimizer.step()
    with torch.no_grad():
        for ema_param, param in zip(ema.parameters(), model.parameters()):
            ema_param.mul_(EMA_DECAY).add_(param.data, alpha=1 - EMA_DECAY)
    return float(loss.detach()), grads, ema.state_dict()


def engine_step(model, schedule, x, y, draws, accumulation):
    stage = TrainDenoiserStage(steps=1, batch_size=BATCH, grad_accumulation=accumulation, ema_decay=EMA_DECAY,
                               class_dropout=0.0, optimizer=OptimizerConfig(lr=LR, betas=BETAS, grad_clip=CLIP))
    state = build_stage2_state(copy.deepcopy(model), stage, torch.device("cpu"))
    state.model.train(False)  # the engine drops labels itself; the model's own drop is off
    total = accumulate_gradients(state.model, schedule, x, y, draws, stage, rank_share(BATCH, accumulation=accumulation))
    clipped = {}  # the gradients the optimiser sees (after clipping)
    state.optimizer.register_step_pre_hook(lambda *_: clipped.update(gradients(state.model)))
    optimizer_step(state, stage)
    return float(total) / BATCH, clipped, state.ema.model.state_dict()


def test_one_step_loss_gradients_and_ema_match_the_reference_step():
    model, schedule, x, y, draws = setup()
    loss, grads, ema = reference_step(model, x, y, draws)
    for accumulation in (1, 4):
        mine_loss, mine_grads, mine_ema = engine_step(model, schedule, x, y, draws, accumulation)
        assert abs(mine_loss - loss) < 1e-6
        for name in grads:
            torch.testing.assert_close(mine_grads[name], grads[name], rtol=0, atol=1e-5, msg=name)
        for name in ema:
            torch.testing.assert_close(mine_ema[name], ema[name], rtol=0, atol=1e-5, msg=name)
