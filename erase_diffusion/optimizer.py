"""The optimiser: Adam stepped after the backward pass (default), or inside it, one parameter at a time.

Stepping inside the backward pass (PyTorch's "fuse the optimizer step into the backward pass" recipe, torchtune's
`optimizer_in_bwd`) updates each parameter as soon as its gradient is complete and frees that gradient at once, so
the gradients of the whole encoder never exist together: 0.34 GB less at SD 1.5 size. Same update, same checkpoints.
"""

import warnings

import torch

# diffusers' get_scheduler names that need no more than warm-up and total steps (its training examples' --lr_scheduler)
SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")


def build_optimizer(params, lr, in_backward=False):
    if in_backward:
        return BackwardAdam(params, lr)
    return torch.optim.Adam(params, lr=lr, fused=True)  # one kernel for all parameters, no per-parameter temporaries


def build_schedules(optimizer, name, warmup_steps, total_steps, start=0):
    """diffusers' learning-rate schedule `name` on the optimiser (on each per-parameter Adam of a BackwardAdam), moved
    on to step `start` when a run resumes; step each once per optimiser step."""
    from diffusers.optimization import get_scheduler

    schedules = [get_scheduler(name, optimizer=opt, num_warmup_steps=warmup_steps, num_training_steps=total_steps)
                 for opt in (optimizer.per_param if isinstance(optimizer, BackwardAdam) else [optimizer])]
    if start:
        with warnings.catch_warnings():  # "step before optimizer.step": those steps ran in the checkpointed run
            warnings.simplefilter("ignore")
            for schedule in schedules:
                schedule.last_epoch = start - 1
                schedule.step()
    return schedules


class BackwardAdam:
    """One fused Adam per parameter, run by the parameter's post-accumulate-grad hook. `step` and `zero_grad` are
    no-ops (the work is done during `backward`); `state_dict` is that of a single Adam over all parameters."""

    def __init__(self, params, lr):
        self.params = list(params)
        self.per_param = [torch.optim.Adam([p], lr=lr, fused=True) for p in self.params]
        for p, opt in zip(self.params, self.per_param):
            p.register_post_accumulate_grad_hook(self._stepper(opt))

    @staticmethod
    def _stepper(opt):
        def step(_param):
            opt.step()
            opt.zero_grad(set_to_none=True)  # frees this gradient now, not after the whole backward pass
        return step

    def step(self):
        pass

    def zero_grad(self, set_to_none=True):
        pass

    def state_dict(self):
        state = {i: opt.state[p] for i, (p, opt) in enumerate(zip(self.params, self.per_param)) if opt.state[p]}
        group = {k: v for k, v in self.per_param[0].param_groups[0].items() if k != "params"}
        return {"state": state, "param_groups": [{**group, "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict):
        (group,) = state_dict["param_groups"]
        group = {k: v for k, v in group.items() if k != "params"}
        for i, opt in enumerate(self.per_param):
            own = {0: state_dict["state"][i]} if i in state_dict["state"] else {}
            opt.load_state_dict({"state": own, "param_groups": [{**group, "params": [0]}]})
