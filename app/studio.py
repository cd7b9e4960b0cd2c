"""The studio: what the original and the erased text encoders make the same UNet draw, judged live.

    erase-diffusion app [--erased OUT] [--erasures_dir DIR] [--port 7860] [--host 127.0.0.1]

Compare: one call, same seeds, two galleries (original | erased) with the independent judge's label and the erased
concept's leak probability under every image. Erase: run the CLIPErase loop from the browser. Report: evaluate an
erasure and show its plots. `/generate` is a named API endpoint for gradio_client.
"""

import argparse
import json
import os
import sys
import threading
import time

from erase_diffusion.errors import UsageError

from .limits import MAX_GUIDANCE, MAX_IMAGES, MAX_SIZE, MAX_STEPS


class Studio:
    """The models behind the app: one base pipeline, its judge, and erased variants sharing its UNet and VAE."""

    def __init__(self, base=None, erasures_dir="erasures", erased=None):
        from erase_diffusion.generate import load_pipeline
        from erase_diffusion.evaluation.judge import Judge
        from erase_diffusion.miniature import judge_path, model_path

        self.base = base or model_path()
        self.original = load_pipeline(self.base)
        self.judge = Judge(judge_path(self.base)) if os.path.isdir(judge_path(self.base)) else None
        self.erasures_dir = erasures_dir
        self.pinned = [os.path.abspath(erased)] if erased else []
        self._erased = {}
        self._lock = threading.Lock()  # diffusers pipelines are not thread-safe: one generation at a time

    def erasures(self):
        """Complete erasures (dirs with erasure.json) under erasures_dir, plus the one given at start-up."""
        found = list(self.pinned)
        if os.path.isdir(self.erasures_dir):
            for name in sorted(os.listdir(self.erasures_dir)):
                path = os.path.abspath(os.path.join(self.erasures_dir, name))
                if os.path.isfile(os.path.join(path, "erasure.json")) and path not in found:
                    found.append(path)
        return found

    def erased_pipeline(self, path, strength=1.0):
        from pipelines import paired_pipelines

        if not path or not os.path.isdir(path):
            raise UsageError(f"erasure dir not found: {path!r}")
        key = (path, float(strength))
        if key not in self._erased:
            self._erased[key] = paired_pipelines(self.base, path, strength=strength, original=self.original)[1]
        return self._erased[key]

    def concepts(self, path):
        record = os.path.join(path, "erasure.json")
        return json.load(open(record)).get("concepts", []) if os.path.isfile(record) else []

    def generate(self, prompt, negative_prompt, seed, num_images, steps, guidance, size, erasure, strength=1.0):
        """Original and erased images for the same seeds, each with the judge's verdict and leak probability."""
        from erase_diffusion.generate import generate

        prompt = (prompt or "").strip()
        if not prompt:
            raise UsageError("the prompt is empty: type what to draw, e.g. 'a red triangle'")
        if not 1 <= int(num_images) <= MAX_IMAGES:
            raise UsageError(f"number of images {num_images} must be within 1..{MAX_IMAGES}")
        if not 1 <= int(steps) <= MAX_STEPS:
            raise UsageError(f"steps {steps} must be within 1..{MAX_STEPS}")
        if not 0.0 <= float(guidance) <= MAX_GUIDANCE:
            raise UsageError(f"guidance {guidance} must be within 0..{MAX_GUIDANCE}")
        factor = self.original.vae_scale_factor
        if not (factor <= int(size) <= MAX_SIZE and int(size) % factor == 0):
            raise UsageError(f"size {size} must be a multiple of {factor} within {factor}..{MAX_SIZE}")
        seeds = [int(seed) + k for k in range(int(num_images))]
        kw = dict(num_inference_steps=int(steps), guidance_scale=float(guidance), negative_prompt=negative_prompt or None,
                  height=int(size), width=int(size))
        with self._lock:
            erased = self.erased_pipeline(erasure, strength)
            before = generate(self.original, [prompt] * len(seeds), seeds, **kw)
            after = generate(erased, [prompt] * len(seeds), seeds, **kw)
        return self.verdicts(before, erasure), self.verdicts(after, erasure)

    def verdicts(self, images, erasure):
        """[(image, judge's top label, leak probability of the erased concept(s))]; leak is None without a judge."""
        if self.judge is None:
            return [(im, "", None) for im in images]
        concepts = [c for c in self.concepts(erasure) if c in self.judge.labels]
        out = []
        for im, v in zip(images, self.judge.classify(images)):
            leak = max((v["shape_probs"][c] for c in concepts), default=0.0)
            out.append((im, f"{v['colour']} {v['shape']} ({v['shape_prob']:.2f})", leak))
        return out

    def erase(self, concepts, steps, on_done=None):
        """Run the CLIPErase loop on the base; returns the new erasure's dir."""
        from erase_diffusion.miniature import world
        from erase_diffusion.train import main, parse_args

        concepts = [c.strip() for c in (concepts or []) if c.strip()]
        if not concepts:
            raise UsageError("pick at least one concept to erase")
        if self.judge is not None:
            unknown = [c for c in concepts if c not in world.SHAPES]
            if unknown:
                raise UsageError(f"unknown concept {', '.join(unknown)}: the miniature knows {', '.join(world.SHAPES)}")
        if not 10 <= int(steps) <= 5000:
            raise UsageError(f"steps {steps} must be within 10..5000")
        out = os.path.join(self.erasures_dir, f"no-{'-'.join(concepts)}-{time.strftime('%Y%m%d-%H%M%S')}")
        with self._lock:
            main(parse_args(["--pretrained_model_name_or_path", self.base, "--concept", ",".join(concepts),
                             "--output_dir", out, "--max_train_steps", str(int(steps)), "--validation_seeds", "1",
                             "--report_to", "none", "--checkpointing_steps", "0"]))
        return os.path.abspath(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="erase-diffusion app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained_model_name_or_path", default=None, help="Base pipeline dir (default: the built-in miniature).")
    p.add_argument("--erased", default=None, help="An erasure dir to select at start (from `erase-diffusion erase`).")
    p.add_argument("--erasures_dir", default="erasures", help="Where the Erase tab writes erasures and Compare looks for them.")
    p.add_argument("--host", default="127.0.0.1", help="Interface to bind; 127.0.0.1 keeps the studio on this machine.")
    p.add_argument("--port", type=int, default=7860, help="Port to serve on.")
    return p.parse_args(argv)


def main(args, block=True):
    from .ui import build_ui

    if args.erased and not os.path.isfile(os.path.join(args.erased, "erasure.json")):
        raise UsageError(f"--erased {args.erased!r} is not an erasure dir (no erasure.json)")
    studio = Studio(args.pretrained_model_name_or_path, args.erasures_dir, args.erased)
    demo = build_ui(studio)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=not block)
    return demo


def cli(argv=None):
    from erase_diffusion.cli import run_script

    return run_script(main, parse_args, argv)


if __name__ == "__main__":
    sys.exit(cli())
