"""The Report tab: an erasure's evaluation, opened from OUT/report/ when the user already ran it, else run once and
kept there; shown as the numbers that decide an eraser (forget, held-out phrasing, in-prompt kept object, each
attack's ASR before and after) and the report's plots with the adversarial images."""

import glob
import json
import os


def pct(x):
    return "n/a" if x is None else f"{x:.0%}"


def numbers(metrics, origin, out):
    """Markdown of the key numbers, original → erased."""
    mean = lambda d: sum(d.values()) / len(d) if d else None  # noqa: E731
    rows = [(label, *(mean(metrics[key][m]) for m in ("original", "erased")))
            for label, key in (("forget (training phrasing)", "forget_accuracy"),
                               ("held-out paraphrases", "held_out_paraphrase_accuracy"),
                               ("held-out templates", "held_out_template_accuracy"),
                               ("retain", "retain_accuracy"))]
    rows.append(("colour (retain prompts)", *(metrics["colour_accuracy"][m]["retain"] for m in ("original", "erased"))))
    rows.append(("in-prompt: kept object right", *((metrics["in_prompt"][m] or {}).get("kept_right")
                                                  for m in ("original", "erased"))))
    lines = [f"**{', '.join(metrics['concepts'])}**: evaluation {origin} `{out}`", "",
             "| judged | original | erased |", "|---|---|---|"]
    lines += [f"| {label} | {pct(o)} | {pct(e)} |" for label, o, e in rows]
    lines += ["", "| attack | ASR before | ASR after |", "|---|---|---|"]
    lines += [f"| {name} | {pct(a['asr_pre'])} | {pct(a['asr_post'])} |" for name, a in metrics["attacks"].items()]
    lines += ["", f"Full report: `{os.path.join(out, 'report.md')}`"]
    return "\n".join(lines)


def report_view(studio, erasure):
    """(markdown of the key numbers, [(png, caption)]) for `erasure`, evaluating it once if it never was."""
    from erase_diffusion.evaluation.evaluate import evaluate

    out = os.path.join(erasure, "report")
    metrics_file = os.path.join(out, "metrics.json")
    if os.path.isfile(metrics_file):
        with open(metrics_file) as f:
            metrics, origin = json.load(f), "opened from"
    else:
        metrics, origin = evaluate(erasure, studio.base, output_dir=out, overwrite_output_dir=True), "run into"
    pngs = sorted(glob.glob(os.path.join(out, "*.png")), key=lambda p: (not os.path.basename(p).startswith("attack"), p))
    return numbers(metrics, origin, out), [(p, os.path.basename(p)[:-4].replace("_", " ")) for p in pngs]
