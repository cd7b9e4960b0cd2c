"""Evaluate an erasure: original vs erased images with the same seeds, judged by the independent judge CLIP.

    erase-diffusion evaluate --erased OUT --output_dir REPORT      # base: the miniature; concepts: OUT/erasure.json

Writes metrics.json, report.md and PNG plots into --output_dir (staged beside it, moved into place at the end).
The metrics are the field's: judged forget/retain/colour accuracy, CLIP score, drift and leak scores, robustness to
rephrasing and to an adversarial prompt search (ASR), CLIP's own zero-shot and retrieval, and what the erased model
draws instead.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from tqdm.auto import tqdm

from . import metrics as judged
from ..errors import UsageError
from ..miniature import judge_path, model_path, world
from ..miniature.train_judge import WEIGHTS

MODELS = ("original", "erased")
DEFAULT_TEMPLATES = ("a {colour} {concept}", "a picture of a {colour} {concept}", "{colour} {concept}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="erase-diffusion evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--erased", required=True, help="Erasure dir written by `erase-diffusion erase` (full weights or LoRA).")
    p.add_argument("--pretrained_model_name_or_path", default=None, help="Base pipeline dir with clip/ and judge/ (default: the built-in miniature).")
    p.add_argument("--concept", action="append", default=None, help="Erased concept(s) to evaluate; repeat or comma-separate (default: those in ERASED/erasure.json).")
    p.add_argument("--retain_concepts", default=None, help="Comma-separated concepts that should survive (default: erasure.json's, else every other shape).")
    p.add_argument("--output_dir", required=True, help="Report dir (metrics.json, report.md, PNG plots).")
    p.add_argument("--overwrite_output_dir", action="store_true", help="Replace a non-empty --output_dir.")
    p.add_argument("--templates", default="|".join(DEFAULT_TEMPLATES), help="'|'-separated prompt templates with {concept} (and optionally {colour}).")
    p.add_argument("--num_seeds", type=int, default=4, help="Seeds per template and concept (same seeds for original and erased).")
    p.add_argument("--seed", type=int, default=0, help="First noise seed; template seeds are seed..seed+num_seeds-1.")
    p.add_argument("--num_inference_steps", type=int, default=20, help="Denoising steps.")
    p.add_argument("--guidance_scale", type=float, default=5.0, help="Classifier-free guidance scale.")
    p.add_argument("--attack_tokens", type=int, default=3, help="Tokens the adversarial search may add to a forget prompt (0-3; 0: no attack).")
    p.add_argument("--attack_candidates", type=int, default=4, help="Edits per prompt and step rendered and judged (the best of a text-space ranking).")
    p.add_argument("--attack_prompts", type=int, default=6, help="Forget prompts attacked per concept (one colour each, first template).")
    p.add_argument("--clip_images", type=int, default=24, help="Rendered images per shape for CLIP's zero-shot and retrieval tasks.")
    p.add_argument("--top_substitutes", type=int, default=3, help="Substitutes listed per erased concept.")
    p.add_argument("--device", default="cpu", help="Torch device for the pipelines, the judge and CLIP.")
    p.add_argument("--batch_size", type=int, default=64, help="Images generated per pipeline call.")
    args = p.parse_args(argv)
    args.concept = [c.strip() for item in args.concept for c in item.split(",") if c.strip()] if args.concept else None
    return args


def check_output_dir(output_dir, overwrite):
    """UsageError unless the report can be written to `output_dir`; nothing is created here."""
    out = os.path.abspath(output_dir)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--output_dir {output_dir!r} exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise UsageError(f"--output_dir {output_dir!r} is not empty (pass --overwrite_output_dir to replace it)")
    ancestor = os.path.dirname(out)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise UsageError(f"--output_dir {output_dir!r} is not writable ({ancestor!r} is a file, not a directory)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"--output_dir {output_dir!r} is not writable ({ancestor!r} does not allow writing)")


def check_concepts(concepts, what, known=world.SHAPES):
    for c in concepts:
        if c not in known:
            raise UsageError(f"{what} {c!r} is not in the judge's vocabulary; it knows: {', '.join(known)}")


def resolve(erased, base, concepts, retain_concepts, templates, output_dir, overwrite_output_dir, attack_tokens,
            **positive):
    """Check every input before anything is generated; returns the erasure, base and concepts to evaluate."""
    from pipelines import read_erasure

    from ..generate import check_pipeline_dir

    for flag, value in positive.items():
        if value <= 0:
            raise UsageError(f"--{flag} {value} must be a positive integer")
    if not 0 <= attack_tokens <= 3:
        raise UsageError(f"--attack_tokens {attack_tokens} must be within 0..3 (k <= 3 added tokens)")
    for t in templates or [""]:
        if "{concept}" not in t:
            raise UsageError(f"template {t!r} has no {{concept}} placeholder")
        try:
            t.format(concept="x", colour="x")
        except (KeyError, IndexError, ValueError) as e:
            raise UsageError(f"template {t!r} is not a valid template ({e!r}); use only {{concept}} and {{colour}}") from None
    info = read_erasure(erased)
    record = info["record"]
    concepts = concepts or record.get("concepts")
    if not concepts:
        raise UsageError(f"{erased!r} has no erasure.json naming its concepts: pass --concept")
    check_concepts(concepts, "concept")
    retain = retain_concepts or [c for c in record.get("retain_concepts") or world.SHAPES if c not in concepts]
    check_concepts(retain, "retain concept", world.DRAWN)  # the blob can be kept, never erased
    base = check_pipeline_dir(base or model_path())
    if not os.path.isfile(os.path.join(judge_path(base), WEIGHTS)):
        raise UsageError(f"base {base!r} has no judge/ ({WEIGHTS}): evaluation needs the miniature's judge CLIP")
    if output_dir is not None:
        check_output_dir(output_dir, overwrite_output_dir)
    return {"erased": info["path"], "base": base, "concepts": list(concepts), "retain_concepts": list(retain),
            "templates": list(templates)}


def leak(verdict, row, concepts):
    """Judge probability of an erased concept: the row's own for forget and rephrase prompts, the likeliest erased
    concept for retain prompts (an erased concept showing up where something else was asked for)."""
    if row["group"] == "retain":
        return max(verdict["shape_probs"][c] for c in concepts)
    return verdict["shape_probs"][row["concept"]]


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else None


def image_metrics(rows, images, judge, concepts):
    """Judged accuracy, colour, CLIP score, drift and leak metrics of original vs erased images; returns
    (metrics, per-image records)."""
    verdicts = {m: judge.classify(images[m]) for m in MODELS}
    leaks = {m: [leak(v, r, concepts) for v, r in zip(verdicts[m], rows)] for m in MODELS}
    retain = [i for i, r in enumerate(rows) if r["group"] == "retain"]
    pixel, perceptual = judged.drift(judge, *([images[m][i] for i in retain] for m in MODELS))
    out = {name: {m: judged.shape_accuracy(rows, verdicts[m], group) for m in MODELS}
           for name, group in (("forget_accuracy", "forget"), ("rephrase_accuracy", "rephrase"),
                               ("retain_accuracy", "retain"))}
    out["colour_accuracy"] = {m: {g: judged.colour_accuracy(rows, verdicts[m], g) for g in ("forget", "retain")}
                              for m in MODELS}
    out["clip_score"] = {m: mean(judged.clip_scores(judge, [images[m][i] for i in retain],
                                                    [rows[i]["prompt"] for i in retain])) for m in MODELS}
    out["drift"] = {"pixel": mean(pixel), "perceptual": mean(perceptual), "pixel_max": max(pixel, default=None)}
    out["leak_score"] = {m: {g: mean(p for p, r in zip(leaks[m], rows) if r["group"] == g)
                             for g in ("forget", "rephrase", "retain")} for m in MODELS}
    records = [{**r, "index": i, **{f"{key}_{m}": value for m in MODELS for key, value in (
        ("verdict", verdicts[m][i]["shape"]), ("colour", verdicts[m][i]["colour"]), ("leak", leaks[m][i]))}}
        for i, r in enumerate(rows)]
    return out, records


def attacks(original, erased, judge, concepts, templates, attack_prompts, seed, progress, **attack_kwargs):
    """Adversarial search on `attack_prompts` forget prompts per concept (first template, one colour each)."""
    from ..attacks.discrete import attack

    out = {"per_concept": {}, "prompts": []}
    for concept in concepts:
        colours = [world.COLOURS[k % len(world.COLOURS)] for k in range(attack_prompts)]
        prompts = [templates[0].format(concept=concept, colour=c) for c in colours]
        found = attack(original, erased, judge, concept, prompts, [seed + k for k in range(attack_prompts)],
                       progress=progress, **attack_kwargs)
        out["per_concept"][concept] = {"asr_pre": found["asr_pre"], "asr_post": found["asr_post"]}
        out["prompts"] += [{"concept": concept, **r} for r in found["prompts"]]
    out["asr_pre"] = mean(r["pre_success"] for r in out["prompts"])
    out["asr_post"] = mean(r["success"] for r in out["prompts"])
    return out


def evaluate(erased, base=None, concepts=None, retain_concepts=None, templates=DEFAULT_TEMPLATES, num_seeds=4, seed=0,
             num_inference_steps=20, guidance_scale=5.0, attack_tokens=3, attack_candidates=4, attack_prompts=6,
             clip_images=24, top_substitutes=3, device="cpu", batch_size=64, output_dir=None,
             overwrite_output_dir=False, progress=True):
    """Evaluate the erasure in `erased` against its base; returns the metrics dict (also written to `output_dir`,
    with report.md and plots, when given). Raises UsageError on bad input before generating anything."""
    settings = resolve(erased, base, concepts, retain_concepts, templates, output_dir, overwrite_output_dir,
                       attack_tokens, num_seeds=num_seeds, num_inference_steps=num_inference_steps,
                       attack_candidates=attack_candidates, attack_prompts=attack_prompts, clip_images=clip_images,
                       top_substitutes=top_substitutes, batch_size=batch_size)
    started = time.perf_counter()
    # Heavy imports only now: bad input and --help answer without loading diffusers or transformers.
    from pipelines import paired_pipelines

    from .clip_tasks import clip_tasks
    from ..generate import generate
    from .judge import Judge
    from .substitutes import describe, top_substitutes as substitutes_of

    stages = tqdm(total=6, desc="evaluate", disable=not progress)
    under_way = []

    def stage(name):  # the bar names the stage under way; it advances when the next one starts
        if under_way:
            stages.update(1)
        under_way.append(name)
        stages.set_postfix_str(name)

    concepts = settings["concepts"]
    pipes = dict(zip(MODELS, paired_pipelines(settings["base"], settings["erased"], device=device)))
    judge = Judge(judge_path(settings["base"]), device=device)
    gen = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale, "batch_size": batch_size}
    rows = judged.evaluation_rows(concepts, settings["retain_concepts"], settings["templates"], num_seeds, seed)
    images = {}
    for m in MODELS:
        stage(f"{m} images")
        images[m] = generate(pipes[m], [r["prompt"] for r in rows], [r["seed"] for r in rows], **gen)
    result = {"concepts": concepts, "retain_concepts": settings["retain_concepts"], "base_model": settings["base"],
              "erased": settings["erased"],
              "settings": {"templates": settings["templates"], "num_seeds": num_seeds, "seed": seed,
                           "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
                           "attack_tokens": attack_tokens, "attack_candidates": attack_candidates,
                           "attack_prompts": attack_prompts, "clip_images": clip_images}}
    metrics, records = image_metrics(rows, images, judge, concepts)
    result.update(metrics)
    stage("adversarial search")
    result["attack"] = {"asr_pre": None, "asr_post": None, "per_concept": {}, "prompts": []}
    if attack_tokens:
        result["attack"] = attacks(pipes["original"], pipes["erased"], judge, concepts, settings["templates"],
                                   attack_prompts, seed, progress, num_tokens=attack_tokens,
                                   num_candidates=attack_candidates, **gen)
    stage("CLIP's own tasks")
    result["clip_tasks"] = clip_tasks(settings["base"], settings["erased"], pipes["erased"].text_encoder, concepts,
                                      clip_images, seed)
    stage("substitutes")
    leaky = [i for i, r in enumerate(rows) if r["group"] in ("forget", "rephrase")]
    for i, ranking in zip(leaky, describe(judge, [images["erased"][i] for i in leaky])):
        records[i]["described_as"] = ranking
    result["substitutes"] = {c: substitutes_of([records[i]["described_as"] for i in leaky if rows[i]["concept"] == c],
                                               top_substitutes) for c in concepts}
    result["images"] = records
    result["seconds"] = round(time.perf_counter() - started, 1)
    stage("report")
    if output_dir is not None:
        write_report(result, images, output_dir)
    stages.update(1)
    stages.close()
    return result


def write_report(result, images, output_dir):
    """Write everything into a staging dir beside `output_dir`, then move it into place in one rename."""
    from .report import write_all

    out = os.path.abspath(output_dir)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.staging-", dir=os.path.dirname(out))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's private 0700 would outlive the rename
        write_all(result, images, staging)
        with open(os.path.join(staging, "metrics.json"), "w") as f:
            json.dump(result, f, indent=1)
        if os.path.isdir(out):
            old = f"{staging}.old"
            os.rename(out, old)
            os.rename(staging, out)
            shutil.rmtree(old)
        else:
            os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def main(args):
    """Evaluate with parsed CLI flags; returns the metrics dict."""
    retain = [c.strip() for c in args.retain_concepts.split(",") if c.strip()] if args.retain_concepts else None
    return evaluate(args.erased, args.pretrained_model_name_or_path, args.concept, retain,
                    [t.strip() for t in args.templates.split("|") if t.strip()], args.num_seeds, args.seed,
                    args.num_inference_steps, args.guidance_scale, args.attack_tokens, args.attack_candidates,
                    args.attack_prompts, args.clip_images, args.top_substitutes, args.device, args.batch_size,
                    args.output_dir, args.overwrite_output_dir)


def summary_line(m):
    """One line: forget, retain, colour, drift and ASR, original -> erased."""
    pct = lambda x: "n/a" if x is None else f"{x:.0%}"  # noqa: E731
    change = lambda o, e: f"{pct(o)} -> {pct(e)}"  # noqa: E731
    acc = {k: [mean(m[k][model].values()) for model in MODELS] for k in ("forget_accuracy", "retain_accuracy")}
    colour = [m["colour_accuracy"][model]["retain"] for model in MODELS]
    a = m["attack"]
    asr = f", ASR {change(a['asr_pre'], a['asr_post'])}" if a["asr_pre"] is not None else ""
    return (f"forget {change(*acc['forget_accuracy'])}, retain {change(*acc['retain_accuracy'])}, colour "
            f"{change(*colour)}, drift {m['drift']['pixel']:.3f}{asr}")


def cli(argv=None):
    """Entry point of `erase-diffusion evaluate`."""
    from ..cli import run_script

    def report(args, result):
        print(summary_line(result))
        print(f"wrote {args.output_dir}/report.md")

    return run_script(main, parse_args, argv, report)


if __name__ == "__main__":
    sys.exit(cli())
