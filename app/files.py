"""Erasures in and out of the studio as .zip files: unpacked safely under the erasures folder, packed for download."""

import os
import shutil
import tempfile
import time
import zipfile

from erase_diffusion.errors import UsageError

ALLOWED = (".json", ".safetensors", ".md", ".txt", ".png")  # what an erasure holds; nothing executable, no pickle
DOWNLOADS = ".downloads"  # under the erasures folder; holds no erasure.json, so it never lists as one
MAX_BYTES = 4 * 2**30


def unpack_erasure(upload, root):
    """Unpack the uploaded .zip into a new erasure dir under `root`; UsageError (nothing left behind) for anything
    that is not a zip of one erasure (erasure.json and text_encoder/ or a LoRA file), or that reaches outside it."""
    path = getattr(upload, "name", upload)
    if not path or not os.path.isfile(str(path)):
        raise UsageError("no file was uploaded: choose the .zip of an erasure")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{os.path.basename(str(path))!r} is not a .zip file: upload the .zip of an erasure folder")
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        firsts = {n.split("/", 1)[0] for n in names}
        nested = len(firsts) == 1 and all("/" in n for n in names)  # one folder at the top: the erasure itself
        inner = [n.split("/", 1)[1] if nested else n for n in names]
        bad = [n for n in names if n.startswith("/") or ".." in n.split("/") or not n.endswith(ALLOWED)]
        if bad:
            raise UsageError(f"the .zip holds {bad[0]!r}: an erasure holds only {', '.join(ALLOWED)} files inside it")
        if "erasure.json" not in inner or not any(n.startswith(("text_encoder/", "pytorch_lora")) for n in inner):
            raise UsageError("the .zip holds no erasure: expected erasure.json and text_encoder/ or "
                             "pytorch_lora_weights.safetensors")
        if sum(i.file_size for i in zf.infolist()) > MAX_BYTES:
            raise UsageError(f"the .zip unpacks to more than {MAX_BYTES // 2**30} GiB")
        os.makedirs(root, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".upload-", dir=root)
        try:
            for name, rel in zip(names, inner):
                dest = os.path.join(staging, rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with zf.open(name) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
            base = os.path.splitext(os.path.basename(str(path)))[0] or "erasure"
            final = os.path.join(root, f"{base}-{time.strftime('%Y%m%d-%H%M%S')}")
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return os.path.realpath(final)


def pack_erasure(path, root):
    """(the erasure folder as a .zip under root/.downloads, the LoRA file or None): what the Erase tab offers."""
    out_dir = os.path.join(root, DOWNLOADS)
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, f"{os.path.basename(path)}.zip")
    tmp = f"{target}.tmp-{os.getpid()}"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for folder, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if d not in ("checkpoints", "logs")]  # resumable state, not the erasure
            for f in files:
                full = os.path.join(folder, f)
                zf.write(full, os.path.join(os.path.basename(path), os.path.relpath(full, path)))
    os.replace(tmp, target)
    lora = os.path.join(path, "pytorch_lora_weights.safetensors")
    return target, (lora if os.path.isfile(lora) else None)
