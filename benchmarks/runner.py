"""One erase run, instrumented: `python -m benchmarks.runner RESULT_JSON <train flags...>`.

Runs erase_diffusion.train.main unchanged, with three light hooks (wrappers around names train.py looks up at call
time) that record when each optimiser step starts and ends, and what the run holds in memory: trainable and
frozen text-encoder parameters and the bytes of cached features. Writes erasure.json's timings, those numbers and
the process's peak RSS to RESULT_JSON.
"""

import json
import resource
import sys
import time

def rss_mib():
    """Current resident set size (MiB), from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def tensor_bytes(obj):
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    return 0


def main(out_json, argv):
    import erase_diffusion.train as T
    from erase_diffusion.cli import quiet_loading

    quiet_loading()
    floor = rss_mib()  # interpreter + torch/transformers/diffusers imports: paid by any run, not by the erase loop
    stats = {"step_starts": [], "rss_floor_mib": floor}
    orig_prepare, orig_step_loss, orig_write = T.prepare, T.step_loss, T.write_outputs

    def prepare(args, accelerator, on_phase):
        setup = orig_prepare(args, accelerator, on_phase)
        named = [(n, p) for enc in setup.encoders for n, p in enc.text_encoder.named_parameters()]
        # the encoder's own weights; the trained copy of the used token rows is counted as trainable only
        params = [p for n, p in named if not n.endswith("token_embedding.rows")]
        trainable = [p for _, p in named if p.requires_grad]
        stats["text_params"] = sum(p.numel() for p in params)
        stats["trainable_params"] = sum(p.numel() for p in trainable)
        stats["param_bytes"] = sum(p.numel() * p.element_size() for p in params)
        stats["trainable_bytes"] = sum(p.numel() * p.element_size() for p in trainable)
        stats["cached_feature_bytes"] = sum(tensor_bytes(c.stored) for c in setup.cache)
        stats["n_forget"], stats["n_retain"] = setup.n_forget, setup.n_retain
        stats["rss_after_setup_mib"] = rss_mib()
        return setup

    def step_loss(*a, **k):
        stats["step_starts"].append(time.perf_counter())
        return orig_step_loss(*a, **k)

    def write_outputs(*a, **k):
        stats["loop_end"] = time.perf_counter()
        stats["peak_rss_before_save_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return orig_write(*a, **k)

    T.prepare, T.step_loss, T.write_outputs = prepare, step_loss, write_outputs
    result = T.main(T.parse_args(argv))
    record = result["record"]
    ends = stats["step_starts"][1:] + [stats.pop("loop_end")]
    stats["step_seconds"] = [e - s for s, e in zip(stats.pop("step_starts"), ends)]
    stats["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    out = {"seconds": record["seconds"], "judge_metrics": record["judge_metrics"], "concepts": record["concepts"],
           "retain_concepts": record["retain_concepts"], "final_losses": record["final_losses"], **stats}
    with open(out_json, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
