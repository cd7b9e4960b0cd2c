"""`erase-diffusion attack`: the attack suite against an erasure, each attack switchable, each judged.

    erase-diffusion attack --erased OUT --output_dir ATTACKS [--attacks discrete,soft_prompt,inversion]

For every attack: pre-attack ASR (the erased model's image of the plain forget prompt is judged to be the concept) and
post-attack ASR (with what the attack found), per concept; the prompts and the learnt embeddings it found
(attacks.json, embeddings.safetensors) and a grid of the adversarial images (attack_<name>.png).
The attacked prompts are evaluate's forget prompts (every template, colour and seed, not a sample).
"""

import argparse
import json
import os
import sys
import time

import torch

from ..attacks import ATTACKS
from ..attacks.common import token_embedding
from ..errors import UsageError

BUDGETS = {  # flag: (default, help); the defaults keep a whole `evaluate` of one concept within 5 min on 2 cores
    "discrete_tokens": (5, "Word tokens the discrete search may add (UnlearnDiffAtk's default: 5)."),
    "discrete_candidates": (4, "Edits per prompt and step rendered and judged (the best of a text-space ranking)."),
    "soft_prompt_tokens": (5, "Continuous embeddings prefixed to each prompt (UnlearnDiffAtk's prefix length)."),
    "soft_prompt_steps": (40, "Adam steps of the soft-prompt attack (UnlearnDiffAtk: 40 iterations)."),
    "soft_prompt_images": (4, "Images of the concept per prompt that the soft prompt is fitted to."),
    "inversion_steps": (150, "Textual-inversion steps of concept inversion."),
    "inversion_images": (4, "Images of the concept per colour that the inverted token is fitted to."),
}
RATES = {"soft_prompt_lr": (1e-2, "Adam learning rate of the soft-prompt attack."),
         "inversion_lr": (5e-3, "Adam learning rate of concept inversion.")}


def add_arguments(p):
    p.add_argument("--attacks", default=",".join(ATTACKS), help=f"Comma-separated attacks to run, of {', '.join(ATTACKS)}; 'none' runs none.")
    for name, (default, text) in BUDGETS.items():
        p.add_argument(f"--{name}", type=int, default=default, help=text)
    for name, (default, text) in RATES.items():
        p.add_argument(f"--{name}", type=float, default=default, help=text)


def check_attacks(args):
    """The attacks to run; UsageError for an unknown name or a budget that is not positive."""
    names = [a.strip() for a in args.attacks.split(",") if a.strip() and a.strip() != "none"]
    unknown = [a for a in names if a not in ATTACKS]
    if unknown:
        raise UsageError(f"--attacks {', '.join(unknown)}: unknown attack; expected some of {', '.join(ATTACKS)}")
    for name in list(BUDGETS) + list(RATES):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name} {getattr(args, name)} must be positive")
    return names


def run_attacks(original, erased, judge, rows, names, args, gen, progress=True):
    """{'attacks': {name: {'asr_pre', 'asr_post', 'per_concept', 'records', 'seconds'}}, 'embeddings', 'images'}.
    `rows`: forget rows (prompt, concept, colour, seed) to attack; `gen`: generation settings."""
    from ..attacks import discrete, inversion, soft_prompt

    out = {"attacks": {}, "embeddings": {}, "images": {}}
    concepts = list(dict.fromkeys(r["concept"] for r in rows))
    for name in names:
        started = time.perf_counter()
        found = {"records": [], "per_concept": {}}
        out["images"][name] = []
        norms = []
        for concept in concepts:
            mine = [r for r in rows if r["concept"] == concept]
            prompts, seeds = [r["prompt"] for r in mine], [r["seed"] for r in mine]
            if name == "discrete":
                res = discrete.attack(original, erased, judge, concept, prompts, seeds, args.discrete_tokens,
                                      args.discrete_candidates, progress=progress, **gen)
            elif name == "soft_prompt":
                res = soft_prompt.attack(original, erased, judge, concept, prompts, seeds, args.soft_prompt_tokens,
                                         args.soft_prompt_steps, args.soft_prompt_lr, args.soft_prompt_images,
                                         progress=progress, **gen)
            else:
                res = inversion.attack(original, erased, judge, concept, [r["colour"] or "red" for r in mine], seeds,
                                       args.inversion_steps, args.inversion_lr, args.inversion_images,
                                       progress=progress, **gen)
            found["per_concept"][concept] = {"asr_pre": res["asr_pre"], "asr_post": res["asr_post"]}
            found["records"] += [{"concept": concept, **r} for r in res["records"]]
            out["images"][name] += res["images"]
            if "embeddings" in res:
                out["embeddings"][f"{name}.{concept}"] = res["embeddings"].contiguous()
                norms.append(res["embeddings"].norm(dim=-1).flatten())
        n = max(1, len(found["records"]))
        found["asr_pre"] = sum(r["pre_success"] for r in found["records"]) / n
        found["asr_post"] = sum(r["success"] for r in found["records"]) / n
        if norms:  # a found vector far outside the vocabulary's norms is an input no typed prompt makes, and no
            # defence that learns from words sees (benchmarks/README.md, fifth round: the star's soft prompt)
            vocabulary = token_embedding(erased.text_encoder).weight.detach().norm(dim=-1).mean()
            found["vector_norm"] = {"found": round(float(torch.cat(norms).mean()), 4),
                                    "vocabulary": round(float(vocabulary), 4)}
        found["seconds"] = round(time.perf_counter() - started, 1)
        out["attacks"][name] = found
    return out


def attack_power(base, judge, concept, names, args, gen, anchor="blob", n=6):
    """Each attack against the un-erased base, started from prompts that name the anchor instead of the concept
    ("a red blob"): the share of them it turns into the concept. An attack that finds nothing here is not an
    attack. Returns {attack: share}."""
    from ..attacks import discrete, inversion, soft_prompt
    from ..miniature import world

    colours = [world.COLOURS[k % len(world.COLOURS)] for k in range(n)]
    prompts = [f"a {c} {anchor}" for c in colours]
    targets = [f"a {c} {concept}" for c in colours]
    seeds = list(range(n))
    out = {}
    if "discrete" in names:
        out["discrete"] = discrete.attack(base, base, judge, concept, prompts, seeds, args.discrete_tokens,
                                          args.discrete_candidates, targets, progress=False, **gen)["asr_post"]
    if "soft_prompt" in names:
        out["soft_prompt"] = soft_prompt.attack(base, base, judge, concept, prompts, seeds, args.soft_prompt_tokens,
                                                args.soft_prompt_steps, args.soft_prompt_lr, args.soft_prompt_images,
                                                targets, progress=False, **gen)["asr_post"]
    if "inversion" in names:
        out["inversion"] = inversion.attack(base, base, judge, concept, colours, seeds, args.inversion_steps,
                                            args.inversion_lr, args.inversion_images, progress=False, **gen)["asr_post"]
    return out


def write_attack_files(result, directory):
    """attacks.json, embeddings.safetensors and one grid of adversarial images per attack into `directory`."""
    from safetensors.torch import save_file

    from ..generate import make_grid

    with open(os.path.join(directory, "attacks.json"), "w") as f:
        json.dump(result["attacks"], f, indent=1)
    if result["embeddings"]:
        save_file(result["embeddings"], os.path.join(directory, "embeddings.safetensors"))
    files = {}
    for name, images in result["images"].items():
        if not images:
            continue
        records = result["attacks"][name]["records"]
        labels = [f"{'LEAK' if r['success'] else 'held'} {r['post_prob']:.2f}" for r in records]
        files[name] = f"attack_{name}.png"
        make_grid(images, cols=min(12, len(images)), labels=labels, scale=2).save(os.path.join(directory, files[name]))
    return files


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="erase-diffusion attack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--erased", required=True, help="Erasure dir written by `erase-diffusion erase` (full weights or LoRA).")
    p.add_argument("--pretrained_model_name_or_path", default=None, help="Base pipeline dir with judge/ (default: the built-in miniature).")
    p.add_argument("--concept", action="append", default=None, help="Concept(s) to attack (default: those in ERASED/erasure.json).")
    p.add_argument("--output_dir", required=True, help="Where attacks.json, embeddings.safetensors and the grids go.")
    p.add_argument("--overwrite_output_dir", action="store_true", help="Replace a non-empty --output_dir.")
    p.add_argument("--num_seeds", type=int, default=4, help="Seeds per forget template (the attacked prompts are evaluate's forget prompts).")
    p.add_argument("--seed", type=int, default=0, help="First noise seed.")
    p.add_argument("--num_inference_steps", type=int, default=20, help="Denoising steps.")
    p.add_argument("--guidance_scale", type=float, default=5.0, help="Classifier-free guidance scale.")
    add_arguments(p)
    args = p.parse_args(argv)
    args.concept = [c.strip() for item in args.concept for c in item.split(",") if c.strip()] if args.concept else None
    return args


def main(args):
    from .evaluate import resolve, staged_output
    from .metrics import evaluation_rows

    names = check_attacks(args)
    settings = resolve(args.erased, args.pretrained_model_name_or_path, args.concept, None, args.output_dir,
                       args.overwrite_output_dir, num_seeds=args.num_seeds, num_inference_steps=args.num_inference_steps)
    from pipelines import paired_pipelines

    from ..miniature import judge_path
    from .judge import Judge

    original, erased = paired_pipelines(settings["base"], settings["erased"])
    judge = Judge(judge_path(settings["base"]))
    rows = [r for r in evaluation_rows(settings["concepts"], [], args.num_seeds, args.seed) if r["group"] == "forget"]
    gen = {"num_inference_steps": args.num_inference_steps, "guidance_scale": args.guidance_scale}
    result = run_attacks(original, erased, judge, rows, names, args, gen)
    with staged_output(args.output_dir) as staging:
        write_attack_files(result, staging)
    return result


def cli(argv=None):
    from ..cli import run_script

    def report(args, result):
        for name, found in result["attacks"].items():
            print(f"{name}: ASR {found['asr_pre']:.0%} -> {found['asr_post']:.0%} ({found['seconds']:.0f} s)")
        print(f"wrote {args.output_dir}/attacks.json")

    return run_script(main, parse_args, argv, report)


if __name__ == "__main__":
    sys.exit(cli())
