"""Evaluate an erasure: original vs erased images with the same seeds, judged by the independent judge CLIP.

    erase-diffusion evaluate --erased OUT --output_dir REPORT      # base: the miniature; concepts: OUT/erasure.json

Writes metrics.json, report.md, attacks.json, embeddings.safetensors and PNG plots into --output_dir (staged beside
it, moved into place at the end). The metrics are the field's: judged forget accuracy on the training phrasing and,
apart, on held-out paraphrases and templates no erasure may train on; retain and colour accuracy; in-prompt
specificity (two-object prompts naming the erased concept and a kept shape); CLIP score, drift and leak scores; the
attack suite (discrete word search, soft prompt, concept inversion) with pre/post ASR; CLIP's own zero-shot and
retrieval; and what the erased model draws instead.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager

from tqdm.auto import tqdm

from ..costs import unet_evaluations
from ..errors import UsageError
from ..miniature import judge_path, model_path, world
from . import metrics as judged
from .attack_suite import add_arguments as add_attack_arguments, check_attacks

MODELS = ("original", "erased")
STAGES = ("original images", "erased images", "attacks", "CLIP's own tasks", "substitutes", "report")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="erase-diffusion evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--erased", required=True, help="Erasure dir written by `erase-diffusion erase` (full weights or LoRA).")
    p.add_argument("--pretrained_model_name_or_path", default=None, help="Base pipeline dir with clip/ and judge/ (default: the built-in miniature).")
    p.add_argument("--concept", action="append", default=None, help="Erased concept(s) to evaluate; repeat or comma-separate (default: those in ERASED/erasure.json).")
    p.add_argument("--retain_concepts", default=None, help="Comma-separated concepts that should survive (default: erasure.json's, else every other shape).")
    p.add_argument("--output_dir", required=True, help="Report dir (metrics.json, report.md, attacks.json, PNG plots).")
    p.add_argument("--overwrite_output_dir", action="store_true", help="Replace a non-empty --output_dir.")
    p.add_argument("--templates", default="|".join(judged.TEMPLATES), help="'|'-separated training-phrasing templates of the forget and retain prompts, with {concept} (and optionally {colour}).")
    p.add_argument("--num_seeds", type=int, default=4, help="Seeds per template and concept (same seeds for original and erased).")
    p.add_argument("--seed", type=int, default=0, help="First noise seed; template seeds are seed..seed+num_seeds-1.")
    p.add_argument("--num_inference_steps", type=int, default=20, help="Denoising steps.")
    p.add_argument("--guidance_scale", type=float, default=5.0, help="Classifier-free guidance scale.")
    add_attack_arguments(p)
    p.add_argument("--clip_images", type=int, default=24, help="Rendered images per shape for CLIP's zero-shot and retrieval tasks.")
    p.add_argument("--top_substitutes", type=int, default=3, help="Substitutes listed per erased concept.")
    p.add_argument("--batch_size", type=int, default=64, help="Images generated per pipeline call.")
    args = p.parse_args(argv)
    args.concept = [c.strip() for item in args.concept for c in item.split(",") if c.strip()] if args.concept else None
    args.retain_concepts = [c.strip() for c in args.retain_concepts.split(",") if c.strip()] if args.retain_concepts else None
    args.templates = [t.strip() for t in args.templates.split("|") if t.strip()]
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


def check_templates(templates):
    for t in templates or [""]:
        if "{concept}" not in t:
            raise UsageError(f"template {t!r} has no {{concept}} placeholder")
        try:
            t.format(concept="x", colour="x")
        except (KeyError, IndexError, ValueError) as e:
            raise UsageError(f"template {t!r} is not a valid template ({e!r}); use only {{concept}} and {{colour}}") from None


def resolve(erased, base, concepts, retain_concepts, output_dir, overwrite_output_dir, **positive):
    """Check every input before anything is generated; returns the erasure, base and concepts to evaluate."""
    from pipelines import read_erasure

    from ..generate import check_pipeline_dir

    for flag, value in positive.items():
        if value <= 0:
            raise UsageError(f"--{flag} {value} must be a positive integer")
    from pipelines.erasure import check_fits_dir

    info = read_erasure(erased)
    record = info["record"]
    concepts = concepts or record.get("concepts")
    if not concepts:
        raise UsageError(f"{erased!r} has no erasure.json naming its concepts: pass --concept")
    check_concepts(concepts, "concept")
    retain = retain_concepts or [c for c in record.get("retain_concepts") or world.SHAPES if c not in concepts]
    check_concepts(retain, "retain concept", world.DRAWN)  # the blob can be kept, never erased
    base = check_pipeline_dir(base or model_path())
    check_fits_dir(info, base)
    from ..miniature.train_judge import WEIGHTS

    if not os.path.isfile(os.path.join(judge_path(base), WEIGHTS)):
        raise UsageError(f"base {base!r} has no judge/ ({WEIGHTS}): evaluation needs the miniature's judge CLIP")
    if output_dir is not None:
        check_output_dir(output_dir, overwrite_output_dir)
    return {"erased": info["path"], "base": base, "concepts": list(concepts), "retain_concepts": list(retain)}


@contextmanager
def staged_output(output_dir):
    """Yield a staging dir beside `output_dir`; on success it replaces `output_dir` in one rename, on failure it goes."""
    out = os.path.abspath(output_dir)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.staging-", dir=os.path.dirname(out))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's private 0700 would outlive the rename
        yield staging
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


def leak(verdict, row, concepts):
    """Judge probability of an erased concept: the row's own for forget and held-out prompts, the likeliest erased
    concept for retain prompts (an erased concept showing up where something else was asked for)."""
    if row["group"] == "retain":
        return max(verdict["shape_probs"][c] for c in concepts)
    return verdict["shape_probs"][row["concept"]]


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def generate_rows(pipe, rows, gen):
    """Images for every row, in row order: two-object rows at the scene size, the rest at the model's own."""
    from ..generate import generate

    images = [None] * len(rows)
    for pair in (False, True):
        idx = [i for i, r in enumerate(rows) if ("objects" in r) == pair]
        size = dict(zip(("width", "height"), world.PAIR_SIZE)) if pair else {}
        for i, im in zip(idx, generate(pipe, [rows[i]["prompt"] for i in idx], [rows[i]["seed"] for i in idx],
                                        **gen, **size)):
            images[i] = im
    return images


def image_metrics(rows, images, judge, concepts):
    """Judged accuracy, colour, in-prompt, CLIP score, drift and leak metrics of original vs erased images; returns
    (metrics, per-image records)."""
    single = [i for i, r in enumerate(rows) if "objects" not in r]
    verdicts = {}
    for m in MODELS:
        verdicts[m] = dict(zip(single, judge.classify([images[m][i] for i in single])))
        pairs = [i for i, r in enumerate(rows) if "objects" in r]
        verdicts[m].update(zip(pairs, judge.classify_scenes([images[m][i] for i in pairs])))
        verdicts[m] = [verdicts[m][i] for i in range(len(rows))]
    s_rows = [rows[i] for i in single]
    s_verdicts = {m: [verdicts[m][i] for i in single] for m in MODELS}
    leaks = {m: [leak(verdicts[m][i], rows[i], concepts) if i in single else None for i in range(len(rows))] for m in MODELS}
    retain = [i for i in single if rows[i]["group"] == "retain"]
    pixel, perceptual = judged.drift(judge, *([images[m][i] for i in retain] for m in MODELS))
    out = {f"{group}_accuracy": {m: judged.shape_accuracy(s_rows, s_verdicts[m], group) for m in MODELS}
           for group in ("forget", "held_out_paraphrase", "held_out_template", "retain")}
    out["colour_accuracy"] = {m: {g: judged.colour_accuracy(s_rows, s_verdicts[m], g) for g in ("forget", "retain")}
                              for m in MODELS}
    out["in_prompt"] = {m: judged.in_prompt_scores(rows, verdicts[m]) for m in MODELS}
    out["clip_score"] = {m: mean(judged.clip_scores(judge, [images[m][i] for i in retain],
                                                    [rows[i]["prompt"] for i in retain])) for m in MODELS}
    out["drift"] = {"pixel": mean(pixel), "perceptual": mean(perceptual), "pixel_max": max(pixel, default=None)}
    out["leak_score"] = {m: {g: mean(p for p, r in zip(leaks[m], rows) if r["group"] == g)
                             for g in ("forget", "held_out_paraphrase", "held_out_template", "retain")} for m in MODELS}
    records = []
    for i, r in enumerate(rows):
        rec = {**{k: v for k, v in r.items() if k != "objects"}, "index": i}
        for m in MODELS:
            v = verdicts[m][i]
            rec[f"verdict_{m}"] = " + ".join(v["shapes"]) if "shapes" in v else v["shape"]
            rec[f"leak_{m}"] = leaks[m][i]
        records.append(rec)
    return out, records


class Phases:
    """Seconds per phase of an evaluation, and a progress bar that names the phase under way."""

    def __init__(self, total, progress):
        self.bar = tqdm(total=total, desc="evaluate", disable=not progress)
        self.seconds, self.name, self.start = {}, None, time.perf_counter()

    def __call__(self, name):
        now = time.perf_counter()
        if self.name:
            self.seconds[self.name] = round(now - self.start, 1)
            self.bar.update(1)
        self.name, self.start = name, now
        self.bar.set_postfix_str(name or "done")

    def close(self):
        self(None)
        self.bar.close()
        return self.seconds


def judge_pipelines(original, erased, judge, concepts, retain, args, phases, progress=True):
    """The judged part of an evaluation of any erased pipeline against its original (the text encoder or the UNet
    may differ): images of every prompt group, their metrics, and the attack suite. Returns (result, images,
    attack outputs); result["unet_evals"] counts the UNet evaluations spent, per phase."""
    from .attack_suite import run_attacks

    gen = {"num_inference_steps": args.num_inference_steps, "guidance_scale": args.guidance_scale,
           "batch_size": args.batch_size}
    rows = judged.evaluation_rows(concepts, retain, args.num_seeds, args.seed, args.templates)
    images, evals = {}, {}
    for m, pipe in zip(MODELS, (original, erased)):
        phases(f"{m} images")
        with unet_evaluations(pipe.unet) as n:
            images[m] = generate_rows(pipe, rows, gen)
        evals[f"{m} images"] = n["unet"]
    metrics, records = image_metrics(rows, images, judge, concepts)
    phases("attacks")
    with unet_evaluations(original.unet, erased.unet) as n:
        found = run_attacks(original, erased, judge, [r for r in rows if r["group"] == "forget"], check_attacks(args),
                            args, gen, progress)
    evals["attacks"] = n["unet"]
    result = {**metrics, "attacks": found["attacks"], "images": records, "unet_evals": evals}
    return result, images, found


def evaluate(erased, base=None, concepts=None, retain_concepts=None, output_dir=None, overwrite_output_dir=False,
             progress=True, args=None):
    """Evaluate the erasure in `erased` against its base; returns the metrics dict (also written to `output_dir`,
    with report.md, attack files and plots, when given). `args`: evaluate's parsed flags (defaults when None).
    Raises UsageError on bad input before generating anything."""
    args = args or parse_args(["--erased", str(erased), "--output_dir", "unused"])
    check_attacks(args)
    check_templates(args.templates)
    settings = resolve(erased, base, concepts, retain_concepts, output_dir, overwrite_output_dir,
                       num_seeds=args.num_seeds, num_inference_steps=args.num_inference_steps,
                       clip_images=args.clip_images, top_substitutes=args.top_substitutes, batch_size=args.batch_size)
    started = time.perf_counter()
    # Heavy imports only now: bad input and --help answer without loading diffusers or transformers.
    from pipelines import paired_pipelines

    from .clip_tasks import clip_tasks
    from .judge import Judge
    from .substitutes import describe, top_substitutes as substitutes_of

    phases = Phases(len(STAGES), progress)
    concepts = settings["concepts"]
    original, erased_pipe = paired_pipelines(settings["base"], settings["erased"])
    judge = Judge(judge_path(settings["base"]))
    result = {"concepts": concepts, "retain_concepts": settings["retain_concepts"], "base_model": settings["base"],
              "erased": settings["erased"],
              "settings": {k: v for k, v in vars(args).items() if k not in ("erased", "output_dir", "concept")}}
    judged_part, images, found = judge_pipelines(original, erased_pipe, judge, concepts, settings["retain_concepts"],
                                                 args, phases, progress)
    result.update(judged_part)
    result["held_out_seen_in_training"] = held_out_seen(settings["erased"])
    phases("CLIP's own tasks")
    result["clip_tasks"] = clip_tasks(settings["base"], settings["erased"], erased_pipe.text_encoder, concepts,
                                      args.clip_images, args.seed)
    phases("substitutes")
    records = result["images"]
    leaky = [i for i, r in enumerate(records) if r["group"] in ("forget", "held_out_paraphrase", "held_out_template")]
    for i, ranking in zip(leaky, describe(judge, [images["erased"][i] for i in leaky])):
        records[i]["described_as"] = ranking
    result["substitutes"] = {c: substitutes_of([records[i]["described_as"] for i in leaky
                                                if records[i]["concept"] == c], args.top_substitutes) for c in concepts}
    phases("report")
    if output_dir is not None:
        from .attack_suite import write_attack_files
        from .report import write_all

        with staged_output(output_dir) as staging:
            write_all(result, images, write_attack_files(found, staging), staging)
            result["seconds"] = {**phases.close(), "total": round(time.perf_counter() - started, 1)}
            with open(os.path.join(staging, "metrics.json"), "w") as f:
                json.dump(result, f, indent=1)
    else:
        result["seconds"] = {**phases.close(), "total": round(time.perf_counter() - started, 1)}
    return result


def held_out_seen(erased):
    """The held-out wording an erasure trained on after all, from its erasure.json: the paraphrases its mined
    neighbours include, and "vocabulary" when its vocabulary captions drew on every word the tokenizer knows. Empty
    for an honest held-out measurement; the erasure's own code never reads the held-out lists, so only this can tell.
    Mined vocabulary captions ("vocabulary") drew on every word the tokenizer knows, the held-out ones included."""
    from ..miniature import world

    path = os.path.join(erased, "erasure.json")
    record = json.load(open(path)) if os.path.isfile(path) else {}
    mined = {w.lower() for ws in (record.get("neighbours") or {}).values() for w in ws}
    seen = sorted(p for ps in world.HELD_OUT_PARAPHRASES.values() for p in ps if p.lower() in mined)
    levers = record.get("levers") or {}
    return seen + (["vocabulary"] if levers.get("mine_neighbours") and levers.get("vocabulary_captions") else [])


def main(args):
    """Evaluate with parsed CLI flags; returns the metrics dict."""
    return evaluate(args.erased, args.pretrained_model_name_or_path, args.concept, args.retain_concepts,
                    args.output_dir, args.overwrite_output_dir, args=args)


def summary_line(m):
    """One line: forget, held-out, retain, colour, in-prompt, drift and each attack's ASR, original -> erased."""
    pct = lambda x: "n/a" if x is None else f"{x:.0%}"  # noqa: E731
    change = lambda o, e: f"{pct(o)} -> {pct(e)}"  # noqa: E731
    acc = {k: [mean(m[k][model].values()) for model in MODELS]
           for k in ("forget_accuracy", "held_out_paraphrase_accuracy", "held_out_template_accuracy", "retain_accuracy")}
    colour = [m["colour_accuracy"][model]["retain"] for model in MODELS]
    kept = [(m["in_prompt"][model] or {}).get("kept_right") for model in MODELS]
    parts = [f"forget {change(*acc['forget_accuracy'])}",
             f"held-out paraphrases {change(*acc['held_out_paraphrase_accuracy'])}",
             f"held-out templates {change(*acc['held_out_template_accuracy'])}",
             f"retain {change(*acc['retain_accuracy'])}", f"colour {change(*colour)}",
             f"in-prompt kept {change(*kept)}", f"drift {m['drift']['pixel']:.3f}"]
    parts += [f"{name} ASR {change(a['asr_pre'], a['asr_post'])}" for name, a in m["attacks"].items()]
    if m.get("held_out_seen_in_training"):
        parts.append(f"NOT held out: the erasure trained on {', '.join(m['held_out_seen_in_training'])}")
    return ", ".join(parts)


def cli(argv=None):
    """Entry point of `erase-diffusion evaluate`."""
    from ..cli import run_script

    def report(args, result):
        print(summary_line(result))
        print(f"wrote {args.output_dir}/report.md")

    return run_script(main, parse_args, argv, report)


if __name__ == "__main__":
    sys.exit(cli())
