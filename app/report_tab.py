"""The Report tab: open an erasure's evaluation, or run it once and keep it beside the erasure (OUT/report/)."""

import glob
import json
import os

from erase_diffusion.errors import UsageError


def load_or_run_report(studio, erasure):
    """(markdown of the key numbers, the report's PNG paths) for `erasure`."""
    from erase_diffusion.evaluation.evaluate import evaluate, summary_line

    if not erasure or not os.path.isfile(os.path.join(erasure, "erasure.json")):
        raise UsageError(f"erasure dir not found: {erasure!r} (pick one from the list or make one in the Erase tab)")
    out = os.path.join(erasure, "report")
    metrics_file = os.path.join(out, "metrics.json")
    if os.path.isfile(metrics_file):
        with open(metrics_file) as f:
            metrics, origin = json.load(f), "opened"
    else:
        metrics, origin = evaluate(erasure, studio.base, output_dir=out, overwrite_output_dir=True), "ran"
    text = (f"**{', '.join(metrics['concepts'])}** ({origin} `{out}`)\n\n{summary_line(metrics)}\n\n"
            f"Full report: `{os.path.join(out, 'report.md')}`")
    return text, sorted(glob.glob(os.path.join(out, "*.png")))
