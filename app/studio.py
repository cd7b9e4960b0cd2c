"""The studio: what the original and the erased text encoders make the same UNet draw, judged live.

    erase-diffusion app [--erased OUT] [--erasures_dir DIR] [--port 7860] [--host 127.0.0.1] [--max_loaded 2]

Compare: one call, same seeds, original and erased side by side with the independent judge's verdict and the erased
concept's leak probability under every image (two-object prompts draw 64x32 scenes, judged half by half). Erase: run
the CLIPErase loop from the browser, phase by phase, and download the result. Report: the erasure's evaluation (held-out
phrasing, in-prompt specificity, the attack suite), opened from its report/ or run once. `/generate` is a named API
endpoint for gradio_client. Only erasures under --erasures_dir (and --erased) are ever read.
"""

import argparse
import json
import os
import sys
import threading
import time
from collections import OrderedDict

from erase_diffusion.errors import UsageError

from .limits import MAX_GUIDANCE, MAX_IMAGES, MAX_SIZE, MAX_STEPS


class Studio:
    """The models behind the app: one base pipeline, its judge, and at most `max_loaded` erased variants (least
    recently used goes first) sharing its UNet and VAE."""

    def __init__(self, base=None, erasures_dir="erasures", erased=None, max_loaded=2):
        from erase_diffusion.evaluation.judge import Judge
        from erase_diffusion.generate import load_pipeline
        from erase_diffusion.miniature import is_miniature, judge_path, model_path

        if max_loaded < 1:
            raise UsageError(f"--max_loaded {max_loaded} must be at least 1")
        self.base = base or model_path()
        self.original = load_pipeline(self.base)
        self.miniature = is_miniature(self.base)
        self.judge = Judge(judge_path(self.base)) if os.path.isdir(judge_path(self.base)) else None
        self.erasures_dir = os.path.abspath(erasures_dir)
        self.pinned = [os.path.realpath(erased)] if erased else []
        self.max_loaded = max_loaded
        self._erased = OrderedDict()  # path -> {"pipe", "format", "strength"}, least recently used first
        self._lock = threading.Lock()  # diffusers pipelines are not thread-safe: one generation at a time

    def erasures(self):
        """Complete erasures (dirs with erasure.json) under erasures_dir, plus the one given at start-up."""
        found = list(self.pinned)
        if os.path.isdir(self.erasures_dir):
            for name in sorted(os.listdir(self.erasures_dir)):
                path = os.path.realpath(os.path.join(self.erasures_dir, name))
                if os.path.isfile(os.path.join(path, "erasure.json")) and path not in found:
                    found.append(path)
        return found

    def resolve(self, path):
        """`path` as a real path, if it is an erasure this studio may read (under erasures_dir, or pinned)."""
        if not path:
            raise UsageError("no erasure selected: pick one from the list, make one in the Erase tab or load a .zip")
        real = os.path.realpath(str(path))
        root = os.path.realpath(self.erasures_dir)
        if real not in self.pinned and os.path.commonpath([real, root]) != root:
            raise UsageError(f"erasure {path!r} is outside the erasures folder {self.erasures_dir!r}")
        if not os.path.isfile(os.path.join(real, "erasure.json")):
            raise UsageError(f"erasure dir not found: {path!r}")
        return real

    def erased_pipeline(self, path, strength=1.0):
        """The erased pipeline of `path` at `strength`: a LoRA's strength changes in place, a full erasure's reloads;
        beyond max_loaded, the least recently used pipeline is dropped."""
        from pipelines import paired_pipelines
        from pipelines.loading import ADAPTER

        path, strength = self.resolve(path), float(strength)
        entry = self._erased.pop(path, None)
        if entry and entry["strength"] != strength:
            if entry["format"] == "lora":
                entry["pipe"].set_adapters([ADAPTER], adapter_weights=[strength])
                entry["strength"] = strength
            else:
                entry = None  # blended weights: load again at the new strength
        if entry is None:
            pipe = paired_pipelines(self.base, path, strength=strength, original=self.original)[1]
            entry = {"pipe": pipe, "format": self.record(path).get("format", "full"), "strength": strength}
        self._erased[path] = entry
        while len(self._erased) > self.max_loaded:
            self._erased.popitem(last=False)
        return entry["pipe"]

    def record(self, path):
        with open(os.path.join(path, "erasure.json")) as f:
            return json.load(f)

    def sizes(self, prompt, size):
        """(width, height) to draw `prompt` at: on the miniature a prompt naming two objects is a scene twice as wide."""
        if not self.miniature:
            return size, size
        from erase_diffusion.miniature import world

        w, h = world.image_size(prompt)
        return w * size // h, size

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
        if not 0.0 <= float(strength) <= 1.0:
            raise UsageError(f"strength {strength} must be within 0..1")
        factor = self.original.vae_scale_factor
        if not (factor <= int(size) <= MAX_SIZE and int(size) % factor == 0):
            raise UsageError(f"size {size} must be a multiple of {factor} within {factor}..{MAX_SIZE}")
        seeds = [int(seed) + k for k in range(int(num_images))]
        width, height = self.sizes(prompt, int(size))
        kw = dict(num_inference_steps=int(steps), guidance_scale=float(guidance), negative_prompt=negative_prompt or None,
                  height=height, width=width)
        with self._lock:
            erased = self.erased_pipeline(erasure, strength)
            concepts = self.record(self.resolve(erasure)).get("concepts", [])
            before = generate(self.original, [prompt] * len(seeds), seeds, **kw)
            after = generate(erased, [prompt] * len(seeds), seeds, **kw)
        return seeds, self.verdicts(before, concepts), self.verdicts(after, concepts)

    def verdicts(self, images, concepts):
        """[(image, judge's verdict in words, leak probability of the erased concept(s))]; without a judge, no leak.
        A two-object scene is judged half by half; its leak is the larger of the halves'."""
        if self.judge is None:
            return [(im, "", None) for im in images]
        concepts = [c for c in concepts if c in self.judge.labels]
        out = []
        for im, v in zip(images, self.judge.classify_any(images)):
            halves = [v["left"], v["right"]] if "left" in v else [v]
            leak = max((h["shape_probs"][c] for h in halves for c in concepts), default=0.0)
            words = " | ".join(f"{h['colour']} {h['shape']} ({h['shape_prob']:.2f})" for h in halves)
            out.append((im, words, leak))
        return out

    def erase(self, concepts, steps, on_phase=None):
        """Run the CLIPErase loop on the base; returns (the new erasure's dir, its erasure.json record)."""
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
            result = main(parse_args(["--pretrained_model_name_or_path", self.base, "--concept", ",".join(concepts),
                                      "--output_dir", out, "--max_train_steps", str(int(steps)), "--validation_seeds",
                                      "1", "--report_to", "none", "--checkpointing_steps", "0"]), on_phase=on_phase)
        return os.path.realpath(out), result["record"]

    def import_zip(self, upload):
        """Unpack an uploaded erasure (.zip) under erasures_dir and check that it fits this base; returns its dir."""
        from .files import unpack_erasure

        with self._lock:
            path = unpack_erasure(upload, self.erasures_dir)
            try:
                from pipelines import read_erasure
                from pipelines.erasure import check_fits

                check_fits(read_erasure(path), self.original.components)
            except UsageError:
                import shutil

                shutil.rmtree(path, ignore_errors=True)
                raise
        return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="erase-diffusion app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained_model_name_or_path", default=None, help="Base pipeline dir (default: the built-in miniature).")
    p.add_argument("--erased", default=None, help="An erasure dir to select at start (from `erase-diffusion erase`).")
    p.add_argument("--erasures_dir", default="erasures", help="Where the Erase tab writes erasures and Compare looks for them; nothing outside it (but --erased) is read.")
    p.add_argument("--max_loaded", type=int, default=2, help="Erased pipelines kept in memory at once (least recently used goes first).")
    p.add_argument("--host", default="127.0.0.1", help="Interface to bind; 127.0.0.1 keeps the studio on this machine.")
    p.add_argument("--port", type=int, default=7860, help="Port to serve on.")
    return p.parse_args(argv)


def main(args, block=True):
    from .charts import CSS
    from .ui import build_ui

    if args.erased and not os.path.isfile(os.path.join(args.erased, "erasure.json")):
        raise UsageError(f"--erased {args.erased!r} is not an erasure dir (no erasure.json)")
    studio = Studio(args.pretrained_model_name_or_path, args.erasures_dir, args.erased, args.max_loaded)
    demo = build_ui(studio)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=not block, css=CSS)
    return demo


def cli(argv=None):
    from erase_diffusion.cli import run_script

    return run_script(main, parse_args, argv)


if __name__ == "__main__":
    sys.exit(cli())
