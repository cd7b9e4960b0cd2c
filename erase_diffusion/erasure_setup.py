"""Everything an erasure run needs before its first step: checked arguments, models, data and cached features.

All of it happens before --output_dir is touched, so bad input leaves nothing behind.
"""

import copy
import random
import re
import time
from dataclasses import dataclass, field

import torch

from . import data
from .adversarial import PREFIX, Adversaries, prefixed, suffixed
from .attacks.common import placeholder_id
from .costs import unet_evaluations
from .defaults import anchor_of, data_defaults, data_source, lever_defaults
from .errors import UsageError
from .families import default_clip_paths, detect_family, load_encoders
from .features import FeatureCache
from .host_memory import pin_mmap_threshold
from .miniature import world
from .prompts import caption_words, guard_prompts, is_pair, same_words, token_state_sets
from .used_rows import train_used_rows


@dataclass
class Setup:
    family: str
    concepts: list
    retain: list
    anchor: str
    encoders: list
    cache: list
    forget: data.Pairs
    retain_pairs: data.Pairs
    text: dict  # the token-state terms' captions: "forget", "anchored", "retain"
    neighbours: dict  # concept -> mined words
    name_ids: list  # per encoder: token ids standing for the concepts (what the adversarial term replaces)
    unet_term: object = None  # the frozen UNet (unet_term.py) when --lambda_unet, a UNet-space attack or outer step
    adversaries: list = field(default_factory=list)  # per encoder, with --adversarial_every (adversarial.py)
    seconds: dict = field(default_factory=dict)  # data, models, cache: where setup time went
    costs: dict = field(default_factory=dict)  # UNet evaluations, encoder passes: what the erasure cost
    tied_names: list = field(default_factory=list)  # the concept names that read the anchor's row (--tie_names)

    @property
    def n_forget(self):
        return len(self.forget)

    @property
    def n_retain(self):
        return len(self.retain_pairs)


def resolve_concepts(args, family):
    concepts = args.concept
    if family == "miniature":
        unknown = [c for c in concepts if c not in world.SHAPES]
        if unknown:
            raise UsageError(f"--concept {', '.join(unknown)}: the miniature knows only {', '.join(world.SHAPES)}")
        default_retain = [s for s in world.SHAPES if s not in concepts]
    else:
        default_retain = [c for c in data.DEFAULT_RETAIN if c not in concepts]
    retain = [c.strip() for c in args.retain_concepts.split(",") if c.strip()] if args.retain_concepts else default_retain
    both = sorted(set(concepts) & set(retain))
    if both:
        raise UsageError(f"concept(s) {', '.join(both)} appear in both --concept and --retain_concepts")
    # the neutral blob is drawn too: the one thing left to keep when every shape is erased
    if family == "miniature" and (unknown := [c for c in retain if c not in world.DRAWN]):
        raise UsageError(f"--retain_concepts {', '.join(unknown)}: the miniature knows only {', '.join(world.DRAWN)}")
    if not retain:
        hint = (f" (every shape is erased: --retain_concepts {world.NEUTRAL} keeps its neutral shape)"
                if family == "miniature" else "")
        raise UsageError(f"the retain set is empty: name --retain_concepts that the erasure must keep{hint}")
    return concepts, retain, anchor_of(args, family)


def prompt_templates(args, family):
    """The templates of self-generated data: --prompt_templates, else the family's (data.default_templates)."""
    templates = args.prompt_templates.split("|") if args.prompt_templates else data.default_templates(family)
    if any("{}" not in t for t in templates):
        raise UsageError(f"--prompt_templates {args.prompt_templates!r}: every template needs a '{{}}' for the concept")
    return templates


def load_pairs(args, family, concepts, retain, anchor):
    """(forget pairs, retain pairs, guard scenes, costs): the images and captions of the paper's terms, and with
    --pair_guard_latents generated the base's drawings of the anchor beside each kept concept (else None)."""
    source = data_source(args, family)
    if source == "folder":
        if not (args.forget_data_dir and args.retain_data_dir):
            raise UsageError("--data_source folder needs both --forget_data_dir and --retain_data_dir")
        words = list(concepts) + [w for c in concepts for w in world.TRAIN_PARAPHRASES.get(c, ())]
        return (data.from_image_folder(args.forget_data_dir, words, anchor), data.from_image_folder(args.retain_data_dir),
                None, {"unet_evals_data": 0})
    if source == "renderer":
        if family != "miniature":
            raise UsageError("--data_source renderer works only with the miniature base model")
        return (*data.from_renderer(concepts, retain, args.num_forget_images, args.num_retain_images, args.seed, anchor),
                None, {"unet_evals_data": 0})
    from .generate import generate, load_pipeline

    templates = prompt_templates(args, family)
    from .retain_cache import retain_pairs

    pipe = load_pipeline(args.pretrained_model_name_or_path)
    per = lambda n, k: max(1, n // len(k))  # noqa: E731
    steps, guidance = args.data_inference_steps, args.data_guidance_scale
    gen = lambda p, prompts, seeds: generate(p, prompts, seeds, steps, guidance)  # noqa: E731
    with unet_evaluations(pipe.unet) as forget_evals:
        forget = data.from_pipeline(pipe, concepts, templates, per(args.num_forget_images, concepts), args.seed,
                                    anchor, gen)
    cache_dir = None if args.retain_cache_dir.lower() == "none" else args.retain_cache_dir
    with unet_evaluations(pipe.unet) as retain_evals:
        images, captions, stats = retain_pairs(pipe, args.pretrained_model_name_or_path, retain, templates,
                                               per(args.num_retain_images, retain), args.seed + 7, steps, guidance,
                                               cache_dir, gen)
    guard, guard_evals, costs = None, {"unet": 0}, {}
    if args.pair_guard_latents == "generated":  # no concept in them: drawn once per kept concept, cached likewise
        from .generate import generate_scenes

        n = per(args.pair_guard_scenes, retain)
        draw = (lambda p, prompts, seeds: generate_scenes(p, prompts, seeds, num_inference_steps=steps,
                                                          guidance_scale=guidance)) if family == "miniature" else gen
        with unet_evaluations(pipe.unet) as guard_evals:
            g_images, g_captions, g_stats = retain_pairs(
                pipe, args.pretrained_model_name_or_path, retain, templates, n, args.seed + 11, steps, guidance,
                cache_dir, draw, lambda k: guard_prompts(anchor, k, templates, n, args.seed + 11), f"guard:{anchor}")
        guard = data.Pairs(g_images, g_captions)
        costs = {"unet_evals_guard_scenes": guard_evals["unet"],
                 "guard_cache": {k: g_stats[k] for k in ("cached", "generated")}}
    return forget, data.Pairs(images, captions), guard, {
        "unet_evals_data": forget_evals["unet"] + retain_evals["unet"] + guard_evals["unet"],
        "unet_evals_forget_images": forget_evals["unet"], "unet_evals_retain_images": retain_evals["unet"],
        "retain_cache": {k: stats[k] for k in ("cached", "generated")}, **costs}


def concept_names(args, family, concepts, source):
    """Every name of the concepts that the data's captions use (the renderer's captions use training paraphrases)."""
    if family == "miniature" and source in ("renderer", "folder"):
        return list(concepts) + [w for c in concepts for w in world.TRAIN_PARAPHRASES.get(c, ())]
    return list(concepts)


def mining_templates(args, family):
    """Caption templates (with '{}') that mining compares words in, and their own words (never mined)."""
    if family == "miniature":
        return [f"a {c} {{}}" for c in world.COLOURS], list(world.COLOURS) + ["a"]
    templates = prompt_templates(args, family)
    return templates, [w for t in templates for w in t.replace("{}", " ").split()]


def caption_sets(args, family, encoders, concepts, retain, anchor, forget, kept):
    """The token-state terms' captions (prompts.py), with the mined neighbours they use."""
    from .neighbours import mine, nearest_kept

    if args.objective == "paper":
        return {"forget": [], "anchored": [], "retain": [], "core": 0, "hard_partners": []}, {}
    source = data_source(args, family)
    names = concept_names(args, family, concepts, source)
    neighbours, far = {}, []
    if args.mine_neighbours:
        templates, words = mining_templates(args, family)
        neighbours = mine(encoders[0], concepts, retain, anchor, templates, words + names, far=far)
    keep = set(world.COLOURS) if family == "miniature" else set()
    forget_captions, retain_captions = forget.captions, kept.captions
    if source == "generate":  # every template, not only those a generated image happened to use: captions cost no
        # UNet evaluations, and 8 images cover 8 of the miniature's 42 templates
        templates = prompt_templates(args, family)
        forget_captions = forget_captions + [t.format(c) for c in concepts for t in templates]
        retain_captions = retain_captions + [t.format(c) for c in retain for t in templates]
    forget_captions = list(dict.fromkeys(forget_captions))  # once each: the first `core` of f are the attacked ones
    if not args.mine_neighbours:
        # unmined, the words named beside kept objects are the family's attribute words (the miniature's colours, words
        # of its training captions, none held out; none elsewhere) that the retain captions never show: captions from
        # templates without colours name none, the miniature's own templates name every one and need none
        far = [w for w in sorted(keep) if not any(re.search(rf"\b{w}\b", c) for c in retain_captions)]
    hard = nearest_kept(encoders[0], concepts, retain, args.hard_pairs) if args.pair_prompts else []
    f, a, r = token_state_sets(forget_captions, retain_captions, names, [w for ws in neighbours.values() for w in ws],
                               anchor, args.pair_prompts, args.caption_noise, args.seed, keep, far, retain,
                               args.vocabulary_captions, args.keep_unconditional, args.suffix_captions, hard)
    # the data's own forget captions come first in f (token_state_sets keeps their order)
    return {"forget": f, "anchored": a, "retain": r, "core": len(forget_captions), "hard_partners": hard}, neighbours


def pair_scenes(forget_captions, anchored, seed):
    """{index: the renderer's drawing of the anchored twin} of every two-object forget caption (a colour the caption
    leaves open is drawn at random): what the guard's target, the original under the anchored caption, draws."""
    rng = random.Random(seed)
    scenes = {}
    for i, (caption, twin) in enumerate(zip(forget_captions, anchored)):
        objects = world.parse(twin)
        if is_pair(caption) and len(objects) == 2:
            scenes[i] = world.render_scene([(shape, colour or rng.choice(world.COLOURS)) for shape, colour in objects], rng)
    return scenes


def guarded_captions(text, guard, concepts, anchor):
    """{index among text["forget"]: drawing} for the guard's generated scenes: each scene's forget caption names a
    concept (in turn) where its caption names the anchor, and is appended to the forget captions with the scene's
    caption as its anchored twin where it is not among them already."""
    index = {c: i for i, c in enumerate(text["forget"])}
    scenes = {}
    for j, (twin, image) in enumerate(zip(guard.captions, guard.images)):
        caption = re.sub(rf"\b{re.escape(anchor)}\b", concepts[j % len(concepts)], twin)
        if caption not in index:
            index[caption] = len(text["forget"])
            text["forget"].append(caption)
            text["anchored"].append(twin)
        scenes[index[caption]] = image
    return scenes


def names_and_anchor(args, family, concepts, neighbours, anchor):
    """Every word that names a concept in the data (its names, mined neighbours) and the anchor."""
    return concept_names(args, family, concepts, data_source(args, family)) + [
        w for ws in neighbours.values() for w in ws] + [anchor]


def word_ids(enc, text, exclude):
    """The word set's candidates: the single-token words of the token-state captions, minus `exclude` (prompts.py's
    caption_words): the data's own words, so no held-out word (which no training caption has) is ever one."""
    words = caption_words(text["forget"] + text["retain"], exclude)
    ids = sorted({t[0] for t in (enc.tokenizer(w, add_special_tokens=False).input_ids for w in words) if len(t) == 1})
    if not ids:
        raise UsageError("--lambda_adversarial_words: the captions have no one-token word besides the concepts' names "
                         "and the anchor to append; use --lambda_adversarial_words 0")
    return torch.tensor(ids, dtype=torch.long)


def name_alias(enc, concepts, anchor):
    """(the token ids of the concepts named by one token, the anchor's one token id) and those concepts, for
    --tie_names; (None, []) when the anchor or every concept takes more than one token (an input row is one token's)."""
    def one(text):
        ids = enc.tokenizer(text, add_special_tokens=False).input_ids
        return ids[0] if len(ids) == 1 else None

    tied = [c for c in concepts if one(c) is not None]
    if one(anchor) is None or not tied:
        return None, []
    return (torch.tensor([one(c) for c in tied], dtype=torch.long), one(anchor)), tied


def name_token_ids(enc, concepts, neighbours):
    """Token ids that stand for the concepts: all of each concept's tokens, and single-token mined neighbours."""
    ids = [t for c in concepts for t in enc.tokenizer(c, add_special_tokens=False).input_ids]
    for w in (w for ws in neighbours.values() for w in ws):
        toks = enc.tokenizer(w, add_special_tokens=False).input_ids
        ids += toks if len(toks) == 1 else []
    return torch.tensor(sorted(set(ids)), dtype=torch.long)


def prepare(args, accelerator, on_phase=lambda name: None):
    family = detect_family(args.pretrained_model_name_or_path)
    lever_defaults(args, family)
    if family == "sdxl" and (args.adversarial_every or args.lambda_unet or args.lambda_adversarial_unet):
        raise UsageError("--adversarial_every, --lambda_unet and --lambda_adversarial_unet work on encoders whose last "
                         "hidden state the UNet reads (SD 1.x, 2.x, the miniature); SDXL's conditioning is not supported "
                         "by them yet")
    if args.lambda_adversarial_unet and not args.adversarial_every:
        raise UsageError(f"--lambda_adversarial_unet {args.lambda_adversarial_unet} is the adversarial term's outer step: "
                         "it needs --adversarial_every > 0 and --objective anchored")
    for name in ("lambda_adversarial_linear", "lambda_adversarial_suffix", "lambda_adversarial_words"):
        if getattr(args, name) and not args.adversarial_every:
            raise UsageError(f"--{name} {getattr(args, name)} is a set of the adversarial term: it needs "
                             "--adversarial_every > 0 and --objective anchored")
    if args.suffix_target != "filler" and not args.lambda_adversarial_suffix:
        raise UsageError(f"--suffix_target {args.suffix_target} sets what the suffix set unlearns to: it needs "
                         "--lambda_adversarial_suffix > 0")
    if args.unet_adversaries and not args.lambda_adversarial_unet:
        raise UsageError(f"--unet_adversaries {args.unet_adversaries} are unlearnt by the outer step through the UNet: "
                         "they need --lambda_adversarial_unet > 0")
    if args.lambda_pair_guard and not (args.adversarial_every and args.pair_prompts):
        raise UsageError(f"--lambda_pair_guard {args.lambda_pair_guard} runs on the adversarial term's steps and reads "
                         "two-object captions: it needs --adversarial_every > 0, --pair_prompts and --objective anchored")
    if args.pair_guard_latents in ("scenes", "generated") and not args.lambda_pair_guard:
        raise UsageError(f"--pair_guard_latents {args.pair_guard_latents} sets what the two-object guard reads: it needs "
                         "--lambda_pair_guard > 0")
    if args.pair_guard_latents == "generated" and data_source(args, family) != "generate":
        raise UsageError(f"--pair_guard_latents generated draws two-object scenes with the base pipeline beside its own "
                         f"data: it needs --data_source generate (got {data_source(args, family)})")
    if args.pair_guard_latents == "generated" and not anchor_of(args, family):
        raise UsageError("--pair_guard_latents generated draws the anchor beside each kept concept: it needs a named "
                         "--anchor (got none)")
    if args.pair_guard_latents == "scenes" and data_source(args, family) != "renderer":
        raise UsageError(f"--pair_guard_latents scenes draws two-object scenes with the miniature's renderer: it needs "
                         f"--data_source renderer (got {data_source(args, family)}); use --pair_guard_latents noise")
    concepts, retain, anchor = resolve_concepts(args, family)
    data_defaults(args, family)
    on_phase("data")
    t = time.perf_counter()
    forget, kept, guard, costs = load_pairs(args, family, concepts, retain, anchor)  # data errors before model loads
    seconds = {"data": time.perf_counter() - t}
    on_phase("models")
    t = time.perf_counter()
    clip_paths = args.clip_model_name_or_path or default_clip_paths(family, args.pretrained_model_name_or_path)
    encoders = load_encoders(args.pretrained_model_name_or_path, family, clip_paths)
    # before the caching pass: its ViT activations would otherwise leave the heap fragmented for the whole run
    pin_mmap_threshold(sum(p.numel() for e in encoders for p in e.text_encoder.parameters()), accelerator.device.type)
    seconds["models"] = time.perf_counter() - t
    on_phase("captions")
    t = time.perf_counter()
    text, neighbours = caption_sets(args, family, encoders, concepts, retain, anchor, forget, kept)
    seconds["captions"] = time.perf_counter() - t
    unet_term = None
    adversarial_reads_unet = args.adversarial_every and (
        args.adversarial_space == "unet" or args.lambda_adversarial_unet > 0 or args.lambda_pair_guard > 0
        or args.lambda_adversarial_linear > 0)
    if args.objective == "anchored" and (args.lambda_unet > 0 or adversarial_reads_unet):  # before the encoder trains: original
        from .unet_term import UNetTerm

        with torch.no_grad():
            anchor_states = encoders[0].text(encoders[0].text_encoder, encoders[0].tokenize(forget.anchored))[0]
        pair_width = world.PAIR_SIZE[0] // world.PAIR_SIZE[1] if family == "miniature" else 1
        scenes = pair_scenes(text["forget"], text["anchored"], args.seed) if args.pair_guard_latents == "scenes" else None
        if guard is not None:
            scenes = guarded_captions(text, guard, concepts, anchor)
        contrast = kept.images if args.linear_gradient_contrast and args.lambda_adversarial_linear > 0 else None
        unet_term = UNetTerm(args.pretrained_model_name_or_path, forget.images, anchor_states, args.unet_batch_size,
                             args.seed, pair_width, scenes, contrast)
    on_phase("caching")
    t = time.perf_counter()
    cache, name_ids, adversaries, tied = [], [], [], []
    for k, enc in enumerate(encoders):
        ids = {"forget": enc.tokenize(forget.captions), "retain": enc.tokenize(kept.captions),
               "text_forget": enc.tokenize(text["forget"]), "text_anchor": enc.tokenize(text["anchored"]),
               "text_retain": enc.tokenize(text["retain"])}
        if args.adversarial_every:  # the captions the adversarial term attacks (the data's own, text["core"]) and its
            # prefix term's targets, the anchored ones behind a filler prefix (adversarial.py)
            core = text["core"]
            ids["adversarial_forget"] = ids["text_forget"][:core]
            ids["prefix_anchor"] = prefixed(ids["text_anchor"][:core], PREFIX, placeholder_id(enc.tokenizer))[0]
            if args.lambda_adversarial_suffix > 0:  # and its suffix term's, the anchored ones with a filler suffix
                anchor_suffixed = suffixed(ids["text_anchor"][:core], PREFIX, placeholder_id(enc.tokenizer),
                                           enc.tokenizer.eos_token_id)
                ids["suffix_anchor"] = anchor_suffixed[0]
        c = FeatureCache(enc, ids, {"forget": enc.pixels(forget.images), "retain": enc.pixels(kept.images)}, k,
                         args.cache_features and not args.train_vision_tower, args.train_vision_tower,
                         forget_states=bool(args.adversarial_every))
        c.build()
        cache.append(c)
        name_ids.append(name_token_ids(enc, concepts, neighbours))
        if args.adversarial_every:  # before add_trainable: the adversaries start from the original token rows
            adversaries.append(Adversaries(ids["text_forget"], name_ids[-1], enc.text_encoder,
                                           torch.Generator().manual_seed(args.seed + k)))
            carried = "suffix_anchor" in ids and args.suffix_target == "carried"
            if carried or args.lambda_adversarial_words > 0:  # sets whose targets the frozen original reads as they go
                original = copy.deepcopy(enc.text_encoder).eval().requires_grad_(False)
            if "suffix_anchor" in ids:
                adversaries[-1].suffixed = suffixed(ids["adversarial_forget"], PREFIX, placeholder_id(enc.tokenizer),
                                                    enc.tokenizer.eos_token_id)
                if carried:  # the original reads the found vectors after the anchored caption
                    adversaries[-1].carried = (original, anchor_suffixed)
            if args.lambda_adversarial_words > 0:
                adversaries[-1].words = (word_ids(enc, text, names_and_anchor(args, family, concepts, neighbours, anchor)),
                                         original, ids["text_anchor"][:text["core"]], enc.tokenizer.eos_token_id)
        alias, names = name_alias(enc, concepts, anchor) if args.tie_names else (None, [])
        tied = names if k == 0 else tied  # the record names the first encoder's
        add_trainable(args, enc, torch.cat([ids[key] for key in ("forget", "retain", "text_forget", "text_retain")]),
                      alias)
    seconds["cache"] = time.perf_counter() - t
    if args.lambda_adversarial_linear > 0 and args.objective == "anchored":  # once, from the original's targets
        t, before = time.perf_counter(), unet_term.evaluations
        goal = cache[0].adversarial_targets(torch.arange(text["core"])).prefix_anchor
        pools = None
        if args.linear_gradient_match:  # the images naming the caption's colours (the miniature's attribute words)
            words = world.COLOURS if family == "miniature" else ()
            core = text["forget"][:text["core"]]
            pools = list(zip(same_words(core, forget.captions, words), same_words(core, kept.captions, words)))
        adversaries[0].gradients = unet_term.concept_gradients(goal, args.linear_gradient_samples, pools)
        seconds["linearisation"] = time.perf_counter() - t
        costs["unet_evals_linearisation"] = unet_term.evaluations - before
    costs["text_encoder_forward_caching"] = sum(c.counts["text_forward"] for c in cache)
    costs["vision_forward_caching"] = sum(c.counts["vision_forward"] for c in cache)
    return Setup(family, concepts, retain, anchor, encoders, cache, forget, kept, text, neighbours, name_ids, unet_term,
                 adversaries, seconds, costs, tied)


def add_trainable(args, enc, caption_ids, alias=None):
    """Full text-tower weights by default (of the token table, the rows of `caption_ids`: no other row can move; the
    tokens of `alias` read another's row), a LoRA with --lora_rank; the vision tower too with --train_vision_tower."""
    if args.lora_rank:
        from peft import LoraConfig

        enc.text_encoder.requires_grad_(False)
        enc.text_encoder.add_adapter(LoraConfig(r=args.lora_rank, lora_alpha=args.lora_alpha or args.lora_rank,
                                                init_lora_weights="gaussian",
                                                target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
    else:
        enc.text_encoder.requires_grad_(True)
        train_used_rows(enc.text_encoder, caption_ids, alias)
    if args.gradient_checkpointing:
        model = enc.text_encoder  # newer transformers renamed it; the old name still works but warns
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    if args.train_vision_tower:
        enc.vision.requires_grad_(True).train()
