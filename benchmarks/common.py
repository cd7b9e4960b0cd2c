"""Shared benchmark plumbing: machine info, JSON-lines results, tables, and one erase run per subprocess.

Every configuration runs in its own process so its peak RSS is its own (ru_maxrss is a high-water mark for the
whole process) and so accelerate never sees two different settings in one process.
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO, "benchmarks", "results")
MIB = 1024 * 1024


def git_commit():
    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model():
    """The CPU's model name and its widest vector units: the same code ran ~1.6x slower on an AVX2-only AMD EPYC
    than on an AMX Intel Xeon (benchmarks/README.md), so timings only compare on one model."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor() or None
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    units = [u for u in ("amx_tile", "avx512f", "avx2") if u in flags]
    return f"{name} ({', '.join(units) or 'no AVX2'})"


def machine_info():
    import torch

    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = round(int(f.readline().split()[1]) / MIB, 1)  # kB -> GiB
    except OSError:
        pass
    # The load average is recorded because the machine is shared: timings taken under load are slower.
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "mem_gib": mem,
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.is_available(), "loadavg_1m": round(os.getloadavg()[0], 2),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git_commit": git_commit()}


def append_results(results_dir, script, records, smoke=False):
    """One JSON line per measurement in <results_dir>/<script>.jsonl, each carrying the machine it ran on."""
    os.makedirs(results_dir, exist_ok=True)
    info = machine_info()
    path = os.path.join(results_dir, f"{script}.jsonl")
    with open(path, "a") as f:
        for rec in records:
            f.write(json.dumps({"script": script, "smoke": smoke, **rec, "machine": info}, default=str) + "\n")
    return path


def table(rows, columns):
    """A plain-text (and Markdown-compatible) table of `rows` (dicts) under `columns` [(key, header, fmt)]."""
    head = [h for _, h, _ in columns]
    body = [[("" if r.get(k) is None else fmt.format(r[k])) if fmt else str(r.get(k, "")) for k, _, fmt in columns]
            for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(b) for b in body])


def run_erase(train_argv, timeout=None):
    """Run one erase (benchmarks.runner) in a fresh process; returns the runner's record plus the process wall time.

    `process_wall` is what a user waits for: interpreter start, imports, model load, data, caching, steps, saving.
    """
    with tempfile.TemporaryDirectory(prefix="erase-bench-") as tmp:
        out_json = os.path.join(tmp, "result.json")
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "benchmarks.runner", out_json, *train_argv], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - t
        if proc.returncode != 0 or not os.path.isfile(out_json):
            raise RuntimeError(f"erase run failed ({proc.returncode}): {' '.join(train_argv)}\n{proc.stderr[-3000:]}")
        with open(out_json) as f:
            rec = json.load(f)
    rec["process_wall"] = wall
    return rec


def erase_argv(output_dir, concepts, steps, batch, cache=True, lora_rank=None, validation_seeds=0, extra=()):
    """Train flags shared by the benchmarks: no trackers, no checkpoints, judged validation only when asked; steps
    and batch of None keep erase's defaults."""
    argv = ["--concept", ",".join(concepts), "--output_dir", output_dir, "--overwrite_output_dir", "--report_to", "none",
            "--checkpointing_steps", "0", "--validation_seeds", str(validation_seeds),
            "--cache_features" if cache else "--no-cache_features"]
    argv += ["--max_train_steps", str(steps)] if steps is not None else []
    argv += ["--train_batch_size", str(batch)] if batch is not None else []
    if lora_rank:
        argv += ["--lora_rank", str(lora_rank)]
    return argv + list(extra)


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2
