"""CLIPErase: erase concepts from a Stable Diffusion pipeline by unlearning its CLIP text encoder(s).

    accelerate launch erase_diffusion/train.py --pretrained_model_name_or_path DIR --concept triangle --output_dir OUT
    erase-diffusion erase --concept triangle --output_dir OUT          # same flags; the base defaults to the miniature

The paper's objective (Yang et al., ACL 2025) guards CLIP's pooled embedding; SD's UNet reads every token state, so
the default objective ("anchored") adds two terms: retain prompts keep their token states, and forget prompts take
the states of the same prompt with the concept replaced by a neutral anchor. `--objective paper` is the exact paper.
"""

import argparse
import math
import os
import sys
import time
from types import SimpleNamespace

import torch
from tqdm.auto import tqdm

from erase_diffusion import checkpoint, losses
from erase_diffusion.adversarial import WORD_CAPTIONS
from erase_diffusion.attacks.common import placeholder_id
from erase_diffusion.erasure_outputs import write_outputs
from erase_diffusion.erasure_setup import prepare
from erase_diffusion.errors import UsageError
from erase_diffusion.flag_checks import validate_args
from erase_diffusion.optimizer import SCHEDULES, build_optimizer, build_schedules
from erase_diffusion.prompts import is_pair
from erase_diffusion.retain_cache import DEFAULT_DIR as RETAIN_CACHE
from erase_diffusion.used_rows import merge_used_rows, tied_ids, untied


PHASES = ("data", "models", "captions", "caching", "training", "saving", "validation")  # what main's on_phase hears


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--pretrained_model_name_or_path", default=None, help="Local SD 1.x/2.x/XL pipeline dir (default: the built-in miniature).")
    g.add_argument("--clip_model_name_or_path", action="append", default=None, help="Full CLIP paired with each text encoder (repeat or comma-separate for SDXL). Default per family: SD1 openai/clip-vit-large-patch14, SD2 laion/CLIP-ViT-H-14-laion2B-s32B-b79K, SDXL both L and bigG, miniature its clip/.")
    g = p.add_argument_group("concepts and data")
    g.add_argument("--concept", action="append", required=True, help="Concept to erase; repeat or comma-separate to erase several in one run.")
    g.add_argument("--retain_concepts", default=None, help="Comma-separated concepts to keep (default: the miniature's other shapes, else everyday objects).")
    g.add_argument("--anchor", default=None, help="Neutral word a forget prompt's concept is mapped to (default: 'blob' on the miniature, '' elsewhere).")
    g.add_argument("--data_source", choices=["auto", "folder", "generate", "renderer"], default="auto", help="Where pairs come from; auto: folders if given, the renderer for the miniature, else self-generated.")
    g.add_argument("--forget_data_dir", default=None, help="Image folder with metadata.jsonl (file_name, text) of the concept.")
    g.add_argument("--retain_data_dir", default=None, help="Image folder with metadata.jsonl of what to keep.")
    g.add_argument("--prompt_templates", default=None, help="'|'-separated prompt templates with {} for the concept, for self-generated data (default: real SD's 'a photo of a {}' and four more; the miniature's own training templates in every colour). The token-state terms read every template, whatever --num_forget_images.")
    g.add_argument("--num_forget_images", type=int, default=None, help="Forget pairs rendered or generated (per concept when generated: /num concepts). Default: 192 rendered (free), 8 generated (each costs UNet evaluations; 8 judged as well as 192).")
    g.add_argument("--num_retain_images", type=int, default=None, help="Retain pairs rendered or generated. Default: 384 rendered, 40 generated (cached, see --retain_cache_dir).")
    g.add_argument("--data_inference_steps", type=int, default=None, help="Denoising steps of self-generated images (each costs one UNet evaluation per image, two with guidance). Default: 10.")
    g.add_argument("--data_guidance_scale", type=float, default=5.0, help="Guidance of self-generated images.")
    g.add_argument("--retain_cache_dir", default=RETAIN_CACHE, help="Where self-generated retain images are cached per base model and settings and reused by later erasures ('none': no cache); `erase-diffusion cache --clear` empties it.")
    g = p.add_argument_group("objective")
    g.add_argument("--objective", choices=["anchored", "paper"], default="anchored", help="anchored: paper + token-state terms (default; meets the judged bars); paper: exactly L = λ1·L_RM + λ2·L_FM + λ3·L_CM.")
    g.add_argument("--lambda_retain", type=float, default=1.0, help="λ1, retention (CLIP contrastive) weight; paper: 1.")
    g.add_argument("--lambda_forget", type=float, default=3.0, help="λ2, forgetting (pair similarity) weight; paper: 3.")
    g.add_argument("--lambda_consistency", type=float, default=3.0, help="λ3, consistency (KL to the original) weight; paper: 3.")
    g.add_argument("--lambda_preserve", type=float, default=None, help="Weight of keeping retain prompts' token states (anchored only). Default 150; 300 by name with the first-order set (see --linear_gradient_contrast). 150: the concept-vector adversaries pull kept shapes' later (padding) states along; at 100 square and cross drew wrong in purple, at 200 the soft-prompt attack came back (benchmarks/README.md). With the name tied (the renderer path's default), 300 beside --lambda_anchor 200 met 3 more robust-erasure bars over six shapes and four seeds (6 missed against 9) but raised concept inversion in 20 of the 24 erasures (46 -> 63 %% on average; still under the peers' 100 %%, but the one shift clear of run-to-run noise): left at 150 (twentieth round).")
    g.add_argument("--lambda_anchor", type=float, default=None, help="Weight of mapping forget prompts' token states to the anchored prompt's (anchored only). Default 100; 200 by name with the first-order set (see --linear_gradient_contrast). With the name tied, 200 (and --lambda_name_row 200) kept the objects beside the concept (1 erasure of 24 under the bar against 4) but let the word search through in 7 against 5, inversion unchanged (47 %%; benchmarks/README.md, twentieth round): left at 100. By name with the name tied (its default), 600 kept every object beside the concept over six shapes and four seeds (in-prompt bar met in 24 of 24, mean 97.5 %% against 92.1 %%; 11 robust-erasure bars missed against 14) but let the attacks through more: the soft prompt over its bar in 4 erasures against 0, the word search in 6 against 3, a held-out phrasing in 1 (9.4 %%), inversion 61 against 54 %% (twenty-seventh round); 400 lost kept objects in 3 erasures against 9 but let the attacks through in the same erasures as 600 (13 bars missed against 14; twenty-eighth round); 300 missed 11 bars over 10 erasures against the default's 9 and 600's 7 (thirtieth round): left at 200, there for a user who would rather keep objects than resist attacks.")
    g.add_argument("--text_batch_size", type=int, default=32, help="Captions per step from each token-state set (forget and retain; anchored only).")
    g = p.add_argument_group("robustness levers (anchored only)")
    g.add_argument("--mine_neighbours", action=argparse.BooleanOptionalAction, default=False, help="Add forget captions naming the words the original encoder places nearer the concept than anything kept (neighbours.py); the other words feed --vocabulary_captions. Off by default: on the miniature it finds the evaluation's held-out paraphrases themselves (e.g. 'orb', 'dot' for circle), so the erasure would train on the phrasing meant to test it.")
    g.add_argument("--vocabulary_captions", type=int, default=1024, help="Retain captions (and a quarter as many forget captions) that also name other words, so words the data never shows (colours, for a name-only erasure) keep their states: with --mine_neighbours the words mined as near no concept, else those of the family's attribute words (the miniature's colours; none elsewhere) that no retain caption names. 0: none.")
    g.add_argument("--keep_unconditional", action=argparse.BooleanOptionalAction, default=True, help="Keep the empty prompt's token states in every step (anchored only). Every pipeline encodes '' with this encoder as classifier-free guidance's unconditional input (and negative prompts the same way); without it the adversarial term moved those states further than the states vary across prompts (mean squared 1.1-1.6 against a variance of 0.96 on the miniature), which changes every guided image, and on the miniature hid damage to kept shapes that guidance against the moved input happened to undo (benchmarks/README.md).")
    g.add_argument("--tie_names", action=argparse.BooleanOptionalAction, default=None, help="The concept's name reads the anchor's token-embedding row, in training and in the saved encoder (where each takes one token, e.g. 'square' -> 'blob'; recorded in erasure.json's tied_names; full weights only, a LoRA file carries no rows). CLIP's text encoder is causal and a token is its input row, so whatever a prompt adds after the name (the word search's finds), whatever object it names beside it, and the padding read the anchor there; --lambda_name_row keeps teaching the layers what the name means. Default: on for the anchored objective with full weights on the renderer's data, and by name where the first-order set runs and the base draws a one-word anchor for the guard; else off. Measured with --lambda_name_row 100 over six shapes and four seeds on the renderer's data: 9 robust-erasure bars missed against 14 without it (the word search 5 against 7, kept objects beside the concept 4 against 7), 16 of 24 erasures meeting every bar against 14, inversion 46 %% against 42 %% on average; by name alone over the triangle, square and star at two seeds 4 against 3 (the word search gone, but the triangle's soft prompt 25-42 %%); by name beside the guard on the base's own drawings over six shapes and four seeds: 14 bars missed against 18 (8 against 13 at seeds 1-3), 13 of 24 erasures meeting every bar against 11, kept objects beside the concept 92.1 against 91.7 %% on average, inversion 54 %% against 48 %% (benchmarks/README.md, nineteenth and twenty-sixth rounds).")
    g.add_argument("--lambda_name_row", type=float, default=100.0, help="Weight of the anchor term read a second time on the forget captions by name with the name's own original row in place of the anchor's (--tie_names only; 0: the tie alone). With the tie the saved encoder never reads that row, but the layers still learn what the name means, so the single-token words near it (the square's 'block', 'tile') erase too: the tie alone leaked the square's held-out paraphrases (6-12 %% at every seed) and missed 12 bars over the 24 erasures, with this term 9 (benchmarks/README.md, eighteenth and nineteenth rounds). One more encoder pass on the captions by name a step.")
    g.add_argument("--pair_prompts", action=argparse.BooleanOptionalAction, default=True, help="Two-object captions in the token-state sets: the concept beside a kept object (forget), two kept objects (retain).")
    g.add_argument("--hard_pairs", type=int, default=0, help="Half of the two-object forget captions (--pair_prompts) name one of the K kept concepts nearest each concept (the original encoder's pooled embeddings) beside it instead of any kept one; recorded with its picks in erasure.json. Why: the adversarial sets rewrite the states a kept object named beside the concept reaches the UNet through most for the nearest one (the circle's erasure: kept squares' states from the end token on 0.63 mean squared from their target, other kept objects' 0.17), and the square was drawn as a blob. 0: off. Measured at 2 over the circle, square, heart and star at four seeds: 13 robust-erasure bars missed against the default's 11 (kept objects beside the circle 100 %% at every seed, against 85-100 %%, but the star's soft prompt above its bar at two seeds); at 1 over the circle and star, 8 against 5 (the word search breaks the circle at every seed) (benchmarks/README.md, seventeenth round).")
    g.add_argument("--suffix_captions", type=int, default=0, help="Forget captions (and as many retain captions) that also come with 1-4 words of the data's own captions appended ('a red circle cross four'; never a concept's name): the discrete search appends its words after the concept, where a causal encoder's later states read the concept back out of the earlier ones, and the words it found were the captions' own (colours, shape names, 'and'). 0: off. Measured at 256 on the renderer's data over six shapes and four seeds: the search still broke 8 erasures of 24 (the default: 6) and kept objects beside the concept fell in 9 (the default: 7), 18 robust-erasure bars missed against 14; by name over the triangle, square and star at two seeds 6 against 4 (benchmarks/README.md, fourteenth round); with the name tied (where the forget captions with words appended become anchored captions kept at the original's states) 10 against 9 over the 24 (nineteenth round): off by default.")
    g.add_argument("--caption_noise", type=float, default=0.0, help="Share of token-state captions also used with a filler word or letter string added (wording never seen).")
    g.add_argument("--adversarial_every", type=int, default=None, help="Every N steps, an inner attack fits vectors in place of the concept's tokens and as a prefix, and the outer term unlearns them (0: off; default: every 2 steps in one process on SD 1.x/2.x and the miniature, off for SDXL and multi-process runs, which it does not support yet).")
    g.add_argument("--adversarial_steps", type=int, default=4, help="Adam steps of each inner attack (its inputs persist per caption between attacks, so these add up). 4: over the six miniature shapes it missed 5 robust-erasure bars, against 8 at 2 inner steps and 8 at 8 (which costs ~10 s more); at 4 the circle's erasure keeps kept squares, and the soft prompt falls for the triangle and the heart (benchmarks/README.md).")
    g.add_argument("--adversarial_batch_size", type=int, default=16, help="Forget captions attacked per adversarial step.")
    g.add_argument("--adversarial_space", choices=["text", "unet"], default="text", help="What the inner prefix attack optimises: text, the original's token states (no UNet); unet, the frozen UNet's denoising loss on the concept's images (the soft-prompt threat itself; 1 UNet evaluation per caption and inner step).")
    g.add_argument("--adversarial_concept_weight", type=float, default=0.3, help="Weight of the concept-vector part of the adversarial term against its prefix part (1: equal). 0.3: at 1, with --keep_unconditional, the concept-vector adversaries of the circle drift to the square's inputs, and unlearning them erased kept squares (retain 75 %%); at 0.3 retain stays at 95-100 %% for all six shapes, at a cost in concept inversion (benchmarks/README.md).")
    g.add_argument("--adversarial_lr", type=float, default=1e-2, help="Learning rate of the inner attack.")
    g.add_argument("--lambda_adversarial", type=float, default=300.0, help="Weight of the adversarial term. By name beside --lambda_anchor 600, 600 here held the star's soft prompt under its bar at two seeds of three (600 alone: at none) but not the square's word search, and let held-out paraphrases through: 12 robust-erasure bars missed over 12 erasures against 600's 11 and the default's 9 (benchmarks/README.md, thirtieth round).")
    g.add_argument("--lambda_pair_padding", type=float, default=0.0, help="Extra weight of the anchor term on two-object forget captions' states from their end token on (anchored, --pair_prompts; 0: off): a causal encoder's states for an object named before the concept cannot see it, so the concept reaches that object through those states (by name, a kept square named first was drawn as a blob). Measured at 300, off by default: on the renderer's data over six shapes and four seeds 15 robust-erasure bars missed against the default's 14 (the star's soft prompt 17 and 42 %% at seeds 2 and 3); by name over the triangle, square and star at two seeds 4 against 4, every kept object beside the concept at 95-100 %% but the word search breaking two erasures (benchmarks/README.md, thirteenth round).")
    g.add_argument("--lambda_pair_anchor", type=float, default=0.0, help="Extra weight of the anchor term on two-object forget captions alone, every position (anchored, --pair_prompts; 0: off), normalised over the whole batch so that those captions read --lambda_anchor plus this while single-object captions keep --lambda_anchor's balance against the adversarial terms: by name, raising the anchor weight everywhere kept objects beside the concept but let the attacks through (twenty-seventh and twenty-eighth rounds). Measured at 400 by name over 15 of the 24 erasures: every kept object beside the concept and every colour held, but the attacks came through where they did at --lambda_anchor 600 (the square's word search at every seed, the star's soft prompt at three; 9 bars missed against 600's 10 and the default's 13 on the same 15), so off (benchmarks/README.md, twenty-ninth round).")
    g.add_argument("--suffix_target", choices=("filler", "carried"), default="filler", help="What the suffix set (--lambda_adversarial_suffix) unlearns its found vectors to. filler: the original's states of the anchored caption with filler tokens after its words, so nothing the vectors add survives. carried: the original's states of the anchored caption followed by the same vectors, so whatever follows the concept keeps its meaning (a kept object named after it) and only the concept goes. Measured at --lambda_adversarial_suffix 300 over six shapes and four seeds: filler 19 robust-erasure bars missed (kept objects beside the concept 85 %% on average, in 17 erasures under the bar; the word search broke 2), carried 35 (kept objects 96 %%, but the soft prompt 37 %% on average, inversion 62 %%, the word search broke 11): the vectors carry the concept back into the target (benchmarks/README.md, fifteenth round).")
    g.add_argument("--lambda_adversarial_suffix", type=float, default=0.0, help="Weight of a fourth adversarial set: vectors after each attacked caption's words (where the discrete search appends its words), fitted so that the encoder under erasure reproduces the original's states of the plain caption (the search's own criterion), and unlearnt to the anchored caption with a filler suffix. 0: off. Measured at 300 over six shapes and seeds 0 and 1: the discrete search succeeded in 1 erasure of 12 (the default: 3), inversion 27 %% on average (the default: 44 %%), but kept objects beside the concept fell (86 %% on average against 93 %%, the circle 65-90 %%): 9 robust-erasure bars missed against the default's 8; at 100, 11; with --lambda_pair_padding 300 over four seeds 19 against 14, inversion 32 against 43 %% (benchmarks/README.md, twelfth and thirteenth rounds).")
    g.add_argument("--lambda_adversarial_words", type=float, default=0.0, help="Weight of a word set: on every adversarial step, one greedy step of the discrete attack's own search (for each attacked caption, the word of the data's own captions that, appended after its words so far, brings the encoder's states closest to the original's states of the plain caption; up to 4 words, then the caption's search starts over), and the anchor term on the caption with its words (target: the original's states of the anchored caption with the same words). Real words, so the target keeps what they mean and only the concept goes. 0: off. Measured at 100 over the circle, square and heart at four seeds (renderer data): 12 robust-erasure bars missed against the default's 11 on the same erasures, the word search breaking 9 against 7 (the circle 8-25 %%); at 300 the square still at 8 %% at every seed: the found caption's states come twice as near their target (mean squared 0.04 against 0.08) and the UNet still draws the concept; by name over the triangle, square and star at two seeds 5 bars missed against 3 (benchmarks/README.md, sixteenth round).")
    g.add_argument("--lambda_adversarial_unet", type=float, default=0.0, help="Weight of AdvUnlearn's outer step through the frozen UNet: under the prefix adversaries, the erased encoder's conditioning must make the UNet predict on the concept's images what the anchored caption makes it predict (0: off; 2 UNet evaluations per attacked caption). Measured with --adversarial_space unet: the star's soft-prompt ASR 67 %% -> 42 %% at 1000, 17 %% at 3000, but over all six shapes at 3000 it missed 11 robust-erasure bars against the default's 5 (soft prompt worse for triangle, heart, cross; kept objects beside the concept 55-95 %%) at ~2.3x the time (benchmarks/README.md, sixth round): off by default.")
    g.add_argument("--lambda_unet", type=float, default=0.0, help="Weight of the UNet-aware term: through the frozen UNet, forget captions must predict the noise the anchored caption does on the concept's images (0: off; unet_term.py).")
    g.add_argument("--unet_adversaries", type=int, default=0, help="Captions per adversarial step that also get a second prefix adversary, fitted through the frozen UNet's denoising loss on the concept's images (the soft-prompt attack itself) and unlearnt by the outer step through the UNet (--lambda_adversarial_unet, which then reads this set; the text-space adversaries stay as they are). 0: off; per caption and attack, one UNet evaluation and backward pass per inner step, and the outer step's two evaluations and backward pass. Measured at 8 with --lambda_adversarial_unet 3000 --lambda_pair_guard 10000 over six shapes and three seeds: soft-prompt ASR 24 -> 17 %% on average, kept objects beside the concept 94 -> 89 %%, 8-11 robust-erasure bars missed per seed against the default's 5-6, ~80 s an erasure (benchmarks/README.md, seventh round): off by default.")
    g.add_argument("--unet_adversarial_every", type=int, default=1, help="Run the UNet-space adversaries, the UNet outer step and the two-object guard on every N-th adversarial step only: their UNet passes are most of their cost, and the adversaries persist between attacks.")
    g.add_argument("--lambda_pair_guard", type=float, default=None, help="Weight of the two-object guard through the frozen UNet, run on the adversarial term's steps: two-object forget captions ('a red star and a yellow circle') must make the UNet predict what their anchored captions make the original predict (on --pair_guard_latents). 0: off. Default: 10,000 where the first-order set runs on the miniature renderer's data (on the renderer's drawings: without the guard that set drew kept objects beside the star as blobs, 50-70 %%; tenth round) and by name where the base generates the data and the anchor is a word (on the base's own drawings: 18 robust-erasure bars missed over six shapes and four seeds against 27, kept objects beside the concept under their bar in 8 erasures against 15; twenty-fifth round), else 0 (benchmarks/README.md).")
    g.add_argument("--pair_guard_latents", choices=["noise", "scenes", "generated"], default=None, help="What the two-object guard's UNet reads: noise, pure noise at the timesteps where layout is decided (any base model); scenes, the miniature renderer's drawings of the anchored two-object captions, noised at every timestep (--data_source renderer only; on pure noise the prediction hardly depends on the caption, and the two-object failures are decided at later timesteps too, benchmarks/README.md, eighth round); generated, the base pipeline's own drawings of the anchor beside each kept concept ('a red blob and a yellow square', --pair_guard_scenes of them, --data_source generate only), each read under its caption with a concept named in the anchor's place (a named --anchor only). Default where the guard runs: scenes on the renderer's data, generated by name, else noise.")
    g.add_argument("--pair_guard_scenes", type=int, default=32, help="With --pair_guard_latents generated: how many two-object scenes of the anchor beside a kept concept the base pipeline draws for the guard, split evenly over the kept concepts (each costs --data_inference_steps x 2 UNet evaluations). They name no erased concept, so they are cached with the retain set (--retain_cache_dir) and a later erasure reuses them.")
    g.add_argument("--pair_guard_captions", type=int, default=8, help="Two-object forget captions per guard step (2 UNet evaluations and a backward pass each).")
    g.add_argument("--lambda_adversarial_linear", type=float, default=None, help="Weight of a third prefix set that sees the frozen UNet to first order (adversarial.py): once before training, the gradient of the UNet's denoising loss on the concept's images with respect to each attacked caption's anchored states is computed (--linear_gradient_samples UNet evaluations and backward passes per caption; none in the loop); the set's inner attack moves the states down that gradient, as the soft-prompt attack does, and the outer step maps them back to the anchored states (weighted as --lambda_adversarial) and penalises the first-order gain left (this weight). 0: off. Default: 300 wherever the adversarial term runs, in 250 steps a concept. On the miniature renderer's data with the guard on its drawings: over six shapes and four seeds soft-prompt ASR 2 %% on average against 25 %% without, 14 robust-erasure bars missed against 23, 49-56 s an erasure (benchmarks/README.md, tenth round). By name (no drawings) with --linear_gradient_contrast and doubled keep weights: 28 bars missed against 34, soft-prompt ASR 2 %% against 28 %%, colour 97 %% against 100 %% (twenty-first round).")
    g.add_argument("--linear_gradient_samples", type=int, default=8, help="(latent, timestep, noise) draws averaged into each caption's UNet gradient for --lambda_adversarial_linear (8, with 250 steps a concept: 14 robust-erasure bars missed over six shapes and four seeds, against 22 with 16 draws and 300 steps, at half the gradients' ~1,600 UNet evaluations; benchmarks/README.md, tenth round).")
    g.add_argument("--linear_gradient_contrast", action=argparse.BooleanOptionalAction, default=None, help="Project each caption's UNet gradient on the kept images (the retain pairs', as many draws) out of its gradient on the concept's (--lambda_adversarial_linear): the two share about half their direction (cosine 0.44-0.51 on the miniature), what lowers the denoising loss on any object, and unlearning that costs kept objects. Doubles the gradients' UNet evaluations, once. Default: on where the set runs without the renderer's drawings (by name), with the keep weights doubled there (--lambda_preserve 300, --lambda_anchor 200): by name at seed 0 kept objects beside the concept 35-50 %% without it, 65-85 %% with it, 80-95 %% with the doubled weights (benchmarks/README.md, twenty-first round); off on the renderer's data, whose guard keeps them.")
    g.add_argument("--linear_gradient_match", action=argparse.BooleanOptionalAction, default=None, help="Draw each caption's UNet gradient for --lambda_adversarial_linear (and its kept contrast) only from the images whose captions name the same colours (the miniature's attribute words; elsewhere every image): read on images of other colours, a caption's gradient also pushes towards their colours. Default: on by name (with --linear_gradient_contrast), off on the renderer's data. By name over six shapes and four seeds, with the data's templates on diagonals: 27 robust-erasure bars missed against 36 without it (colour under its bar in 7 erasures against 12, kept objects beside the concept in 15 against 17, the word search in 5 against 7; benchmarks/README.md, twenty-third round).")
    g.add_argument("--unet_batch_size", type=int, default=8, help="Forget images per step in the UNet-aware term (each costs 2 UNet evaluations and a backward pass).")
    g = p.add_argument_group("what learns")
    g.add_argument("--train_vision_tower", action="store_true", help="Also unlearn the vision tower (the paper's full-CLIP setting); disables feature caching.")
    g.add_argument("--lora_rank", type=int, default=None, help="Train a LoRA of this rank on the text encoder(s) instead of full weights; loads with pipe.load_lora_weights(OUT).")
    g.add_argument("--lora_alpha", type=float, default=None, help="LoRA alpha (default: the rank, i.e. scale 1).")
    g.add_argument("--cache_features", action=argparse.BooleanOptionalAction, default=True, help="Compute frozen image embeddings and the original's text outputs once instead of every step.")
    g = p.add_argument_group("training")
    g.add_argument("--max_train_steps", type=int, default=None, help="Optimiser steps (default per concept, since each concept's forget captions and adversaries share the steps: 160 with the first-order set, --lambda_adversarial_linear, at its larger learning rate, else 300).")
    g.add_argument("--train_batch_size", type=int, default=16, help="Forget pairs and retain pairs per step (each), for the paper's terms (the paper's batch: 16).")
    g.add_argument("--learning_rate", type=float, default=None, help="Adam learning rate; default 1.6e-4 for full weights where the first-order set runs (--lambda_adversarial_linear; with its 160 steps a concept, about as far as 250 steps at 1e-4: over six shapes and four seeds 5 robust-erasure bars missed against 9 on the renderer's data, 15 against 14 by name, at ~0.6x the time; benchmarks/README.md, thirty-first round), else 1e-4; 1e-3 for LoRA (the paper's 1e-6 is for ViT-L over 20 epochs).")
    g.add_argument("--lr_scheduler", default="constant", choices=SCHEDULES, help="The learning rate's schedule over the steps, diffusers' get_scheduler (as its training examples' flag): 'constant' keeps --learning_rate throughout; 'cosine' and 'linear' decay it to 0 by --max_train_steps.")
    g.add_argument("--lr_warmup_steps", type=int, default=0, help="Steps over which the learning rate rises from 0 to --learning_rate first (every schedule but 'constant').")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Batches accumulated per optimiser step.")
    g.add_argument("--gradient_checkpointing", action="store_true", help="Recompute the text encoder's activations in the backward pass: less memory (SD 1.5 size, batch 16, with --optimizer_in_backward: peak 2.1 GB instead of 3.6 GB).")
    g.add_argument("--optimizer_in_backward", action="store_true", help="Step Adam inside the backward pass, one parameter at a time, freeing each gradient at once: the whole model's gradients never exist together (SD 1.5 size: 0.34 GB less). One process, no gradient accumulation, not with fp16.")
    g.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default="no", help="Autocast precision (fp16 needs a GPU).")
    g.add_argument("--seed", type=int, default=0, help="Seed for data, batches and LoRA init.")
    g = p.add_argument_group("checkpoints, logging, output")
    g.add_argument("--output_dir", required=True, help="Where the erasure is written (text_encoder/, tokenizer/, erasure.json, README.md).")
    g.add_argument("--overwrite_output_dir", action="store_true", help="Allow a non-empty --output_dir.")
    g.add_argument("--checkpointing_steps", type=int, default=100, help="Save a resumable checkpoint every N steps (0: never).")
    g.add_argument("--use_ema", action=argparse.BooleanOptionalAction, default=None, help="Save an exponential moving average of the trained weights (diffusers' EMAModel) instead of the last step's: the adversarial loop is a min-max game, whose averaged iterates are steadier than its last one. Default: on for the anchored objective, off for --objective paper (the paper's method as published). On: over six shapes and four seeds on the renderer's data 14 robust-erasure bars missed either way, but 14 of 24 erasures met every bar against 12, the soft prompt stayed under its bar in all 24 and kept objects beside the concept rose 92.5 -> 94.8 %% on average; by name over the triangle, square and star at two seeds 3 bars missed against 4 (benchmarks/README.md, fourteenth round).")
    g.add_argument("--ema_decay", type=float, default=0.99, help="The EMA's largest decay; EMAModel's own (1+t)/(10+t) schedule stays below it (0.947 at the default's last step, 160; 0.965 at 250), so the average spans about the last 19 steps (30 at 250): the same share of the run.")
    g.add_argument("--ema_power", type=float, default=0.0, help="0: EMAModel's own (1+t)/(10+t) decay schedule. p > 0: diffusers' warm-up schedule 1-(1+t)^-p instead (as in diffusers' train_unconditional.py, --ema_power 0.75), still capped at --ema_decay: at step 250 the average spans about the last 40 steps with 2/3, 60 with 3/4; 1 averages every step alike. At 0.75 on the circle, square and cross at four seeds: 15 robust-erasure bars missed against the default's 12 (kept objects beside the concept 90 against 92.5 %% on average; benchmarks/README.md, fifteenth round).")
    g.add_argument("--checkpoints_total_limit", type=int, default=2, help="Keep at most this many checkpoints.")
    g.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint-N dir to resume from.")
    g.add_argument("--report_to", default="tensorboard", help="Accelerate tracker ('tensorboard', 'wandb', 'all' or 'none').")
    g.add_argument("--logging_dir", default="logs", help="Tracker directory, relative to --output_dir.")
    g.add_argument("--validation_seeds", type=int, default=1, help="Seeds per prompt for the before/after validation images and judged metrics (0: skip).")
    g.add_argument("--num_inference_steps", type=int, default=20, help="Denoising steps of validation images.")
    g.add_argument("--guidance_scale", type=float, default=5.0, help="Guidance of validation images.")
    args = p.parse_args(argv)
    args.concept = [c.strip() for item in args.concept for c in item.split(",")]
    if args.clip_model_name_or_path:
        args.clip_model_name_or_path = [c.strip() for item in args.clip_model_name_or_path for c in item.split(",") if c.strip()]
    return args


def batch_indices(n, size, seed, step, rank):
    """Batch of `size` indices out of n, fixed by (seed, step, rank): resuming replays the same batches.

    Drawn without replacement when the set is large enough: a pair twice in one batch would be its own negative in
    the contrastive retain loss.
    """
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    g = torch.Generator().manual_seed(seed * 1_000_003 + step * 1_009 + rank)
    return torch.randperm(n, generator=g)[:size] if size <= n else torch.randint(n, (size,), generator=g)


def with_unconditional(args, idx):
    """The retain token-state batch `idx`, with the empty prompt (retain caption 0, prompts.token_state_sets) always
    in it: drawn at random like the ~800 others, it would be in one step of ~50 and could drift in between."""
    if not (args.keep_unconditional and args.objective == "anchored" and len(idx)):
        return idx
    return torch.cat([idx.new_zeros(1), idx[idx != 0]])


def step_batch(args, setup, k, rank):
    """Index tensors of one step's image pairs (f, r) and token-state captions (tf, tr)."""
    text = setup.cache[0].ids
    return SimpleNamespace(f=batch_indices(setup.n_forget, args.train_batch_size, args.seed, k, rank),
                           r=batch_indices(setup.n_retain, args.train_batch_size, args.seed + 1, k, rank),
                           tf=batch_indices(len(text["text_forget"]), args.text_batch_size, args.seed + 2, k, rank),
                           tr=with_unconditional(args, batch_indices(len(text["text_retain"]), args.text_batch_size,
                                                                     args.seed + 3, k, rank)),
                           # the adversarial term attacks the data's own forget captions only, so each one's
                           # persistent adversary is attacked often enough to grow strong
                           adv=batch_indices(setup.text["core"], args.adversarial_batch_size, args.seed + 4, k, rank))


def step_loss(args, setup, models, batch, adversarial=False, unet_adversarial=False):
    """The objective on one step's batches, summed over the text encoders; returns (loss, logs, encoder rows run).
    `adversarial`: the adversarial term runs this step; `unet_adversarial`: its parts through the UNet too."""
    terms, rows = {}, 0
    for k, enc in enumerate(setup.encoders):
        model, cache = models[enc.name], setup.cache[k]
        pairs = [cache.ids["forget"][batch.f], cache.ids["retain"][batch.r]]
        texts = [cache.ids["text_forget"][batch.tf], cache.ids["text_retain"][batch.tr]]
        # The paper's terms read pooled embeddings only; the token-state terms read every position, padding too
        # (the UNet does): two forwards, the first on captions cut after their end token.
        f_emb, r_emb = enc.pooled(model, torch.cat(pairs)).split([len(p) for p in pairs])
        states, _ = enc.text(model, torch.cat(texts)) if len(texts[0]) + len(texts[1]) else (None, None)
        tf_states, tr_states = states.split([len(t) for t in texts]) if states is not None else (None, None)
        rows += sum(len(p) for p in pairs + texts)
        img_f, img_r = cache.image_embeds("forget", batch.f, models), cache.image_embeds("retain", batch.r, models)
        orig = cache.original(batch.r, img_r, batch.tf, batch.tr)
        scale = enc.logit_scale
        part = {"forget": losses.forget_loss(img_f, f_emb), "retain": losses.retain_loss(img_r, r_emb, scale),
                "consistency": losses.consistency_loss(losses.clip_logits(orig.img_r, orig.r_emb, scale),
                                                       losses.clip_logits(img_r, r_emb, scale))}
        if args.objective == "anchored":
            part["preserve"] = losses.token_preservation_loss(tr_states, orig.retain_states)
            part["anchor"] = losses.anchor_loss(tf_states, orig.anchor_states)
            if args.lambda_name_row > 0 and (names := tied_ids(model)) is not None:
                by_name = torch.isin(texts[0], names).any(1)
                if by_name.any():  # the name's own row, as the saved encoder never reads it: the layers still learn
                    with untied(model):  # what it means, so single-token words near it erase too
                        own = enc.text(model, texts[0][by_name])[0]
                    part["name_row"] = losses.anchor_loss(own, orig.anchor_states[by_name])
                    rows += int(by_name.sum())
            pair_rows = [i for i, c in enumerate(batch.tf.tolist()) if is_pair(setup.text["forget"][c])]
            if args.lambda_pair_padding > 0 and pair_rows:  # from the end token on: the states every object of the
                # caption reaches the UNet through
                after = (texts[0][pair_rows] == enc.tokenizer.eos_token_id).cumsum(1) > 0
                part["pair_padding"] = losses.anchor_loss(tf_states[pair_rows][after],
                                                          orig.anchor_states[pair_rows][after])
            if args.lambda_pair_anchor > 0 and pair_rows:
                part["pair_anchor"] = losses.rows_anchor_loss(tf_states, orig.anchor_states, pair_rows)
            if adversarial:
                ids = cache.ids["text_forget"][batch.adv]
                part.update(setup.adversaries[k].loss(
                    model, ids, batch.adv, placeholder_id(enc.tokenizer), cache.adversarial_targets(batch.adv),
                    args.adversarial_steps, args.adversarial_lr, args.adversarial_concept_weight,
                    setup.unet_term if args.adversarial_space == "unet" else None,
                    setup.unet_term if args.lambda_adversarial_unet > 0 and k == 0 and unet_adversarial else None,
                    args.unet_adversaries))
                unet_set = min(args.unet_adversaries, len(ids)) if unet_adversarial and k == 0 else 0
                linear_set = len(ids) if setup.adversaries[k].gradients is not None else 0
                suffix_set = len(ids) if setup.adversaries[k].suffixed is not None else 0
                rows += (len(ids) + unet_set + linear_set + suffix_set) * (2 * args.adversarial_steps + 2)
                if setup.adversaries[k].words is not None:  # the search's candidates, the target, the outer step
                    rows += min(len(ids), WORD_CAPTIONS) * (len(setup.adversaries[k].words[0]) + 3)
            if unet_adversarial and args.lambda_pair_guard > 0 and k == 0:
                two = [i for i in pair_rows if setup.unet_term.guards(int(batch.tf[i]))]
                if two:  # a batch may draw none
                    two = torch.tensor(two[:args.pair_guard_captions], dtype=torch.long)
                    part["pair_guard"] = setup.unet_term.pair_guard(tf_states[two], orig.anchor_states[two],
                                                                    batch.tf[two])
            if args.lambda_unet > 0 and k == 0:
                f_states = enc.text(model, pairs[0][:args.unet_batch_size])[0]
                part["unet"] = setup.unet_term.loss(batch.f, f_states)
        for name, v in part.items():
            terms[name] = terms.get(name, 0.0) + v
    weights = {"retain": args.lambda_retain, "forget": args.lambda_forget, "consistency": args.lambda_consistency,
               "preserve": args.lambda_preserve, "anchor": args.lambda_anchor, "adversarial": args.lambda_adversarial,
               "adversarial_unet": args.lambda_adversarial_unet, "unet": args.lambda_unet,
               "pair_guard": args.lambda_pair_guard, "adversarial_linear": args.lambda_adversarial_linear,
               "adversarial_linear_states": args.lambda_adversarial, "adversarial_suffix": args.lambda_adversarial_suffix,
               "adversarial_words": args.lambda_adversarial_words,
               "pair_padding": args.lambda_pair_padding, "pair_anchor": args.lambda_pair_anchor,
               "name_row": args.lambda_name_row}
    loss, logs = losses.total_loss(terms, weights)
    return loss, logs, rows


def main(args, on_phase=None):
    """Run the erasure; `on_phase(name)` (optional) hears each phase start: data, models, captions, caching, training,
    saving, validation (the studio shows them as progress)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    started = time.perf_counter()
    validate_args(args)
    report_to = None if args.report_to == "none" else args.report_to
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision, gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=report_to, project_config=ProjectConfiguration(project_dir=args.output_dir,
                                                                logging_dir=os.path.join(args.output_dir, args.logging_dir)))
    if args.adversarial_every is None and accelerator.num_processes > 1:
        args.adversarial_every = 0  # the inner attack runs on the unwrapped encoder: one process only
    if args.adversarial_every and accelerator.num_processes > 1:
        raise UsageError(f"--adversarial_every runs in one process (got {accelerator.num_processes}): its inner attack "
                         "works on the unwrapped encoder")
    if args.optimizer_in_backward and accelerator.num_processes > 1:
        raise UsageError(f"--optimizer_in_backward runs in one process (got {accelerator.num_processes}): its steps "
                         "would run before the processes' gradients are averaged")
    set_seed(args.seed)
    on_phase = on_phase or (lambda name: None)
    setup = prepare(args, accelerator, on_phase)  # loads and checks everything before --output_dir is touched
    seconds = {"setup": time.perf_counter() - started, **setup.seconds}
    models = {enc.name: enc.text_encoder for enc in setup.encoders}
    if args.train_vision_tower:
        models.update({f"vision_{k}": enc.vision for k, enc in enumerate(setup.encoders)})
    params = [p for m in models.values() for p in m.parameters() if p.requires_grad]
    if args.optimizer_in_backward:  # its hooks step the prepared (on-device) parameters: no accelerate wrapper
        prepared = accelerator.prepare(*models.values())
        models = dict(zip(models, prepared if isinstance(prepared, tuple) else (prepared,)))
        params = [p for m in models.values() for p in m.parameters() if p.requires_grad]
        optimizer = build_optimizer(params, args.learning_rate, in_backward=True)
    else:
        prepared = accelerator.prepare(*models.values(), build_optimizer(params, args.learning_rate))
        models, optimizer = dict(zip(models, prepared[:-1])), prepared[-1]

    ema = None
    if args.use_ema:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(params, decay=args.ema_decay, use_ema_warmup=args.ema_power > 0, power=args.ema_power)
    os.makedirs(args.output_dir, exist_ok=True)
    start = 0
    resume = checkpoint.resolve(args.output_dir, args.resume_from_checkpoint)
    unwrapped = {k: accelerator.unwrap_model(m) for k, m in models.items()}
    if resume:
        start, extra = checkpoint.load(resume, unwrapped, optimizer)
        for k, adversaries in enumerate(setup.adversaries):
            adversaries.load_state_dict({key[len(f"{k}."):]: v for key, v in extra.items() if key.startswith(f"{k}.")})
        if setup.unet_term is not None:  # set after the setup's own draws (the gradients): the loop's continue here
            setup.unet_term.load_state_dict(extra)
        if ema is not None:
            if "ema.step" not in extra:
                raise UsageError(f"checkpoint {resume!r} was made without the moving average: resume with --no-use_ema")
            ema.load_state_dict({**ema.state_dict(), "optimization_step": int(extra["ema.step"]),
                                 "shadow_params": [extra[f"ema.{i}"] for i in range(len(params))]})
        accelerator.print(f"resumed from {resume} at step {start}")
    if accelerator.is_main_process and report_to:
        accelerator.init_trackers("erase-diffusion", config={k: str(v) for k, v in vars(args).items()})

    schedules = build_schedules(optimizer, args.lr_scheduler, args.lr_warmup_steps, args.max_train_steps, start)
    costs = setup.costs
    costs.update(text_encoder_forward_backward=0, optimizer_steps=args.max_train_steps - start)
    on_phase("training")
    bar = tqdm(range(start, args.max_train_steps), initial=start, total=args.max_train_steps, desc="erase",
               disable=not accelerator.is_local_main_process)
    logs = {}
    for m in models.values():  # nothing in the loop switches them back to eval
        m.train()
    for step in bar:
        for micro in range(args.gradient_accumulation_steps):
            with accelerator.accumulate(*models.values()):
                with accelerator.autocast():
                    k = (step * args.gradient_accumulation_steps + micro) * accelerator.num_processes
                    batch = step_batch(args, setup, k, accelerator.process_index)
                    adversarial = bool(args.adversarial_every) and step % args.adversarial_every == 0
                    every = args.adversarial_every * args.unet_adversarial_every
                    unet_adversarial = adversarial and step % every == 0
                    loss, logs, rows = step_loss(args, setup, models, batch, adversarial, unet_adversarial)
                    costs["text_encoder_forward_backward"] += rows
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
        for schedule in schedules:
            schedule.step()
        if ema is not None:
            ema.step(params)
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"loss became {loss.item()} at step {step}; lower --learning_rate")
        logs["loss"] = loss.item()
        bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()})
        accelerator.log({**logs, "lr": schedules[0].get_last_lr()[0]}, step=step + 1)  # the tracker shows the schedule
        if args.checkpointing_steps and (step + 1) % args.checkpointing_steps == 0 and step + 1 < args.max_train_steps:
            if accelerator.is_main_process:
                extra = {f"{k}.{key}": v for k, a in enumerate(setup.adversaries) for key, v in a.state_dict().items()}
                extra.update(setup.unet_term.state_dict() if setup.unet_term is not None else {})
                if ema is not None:
                    extra.update({f"ema.{i}": p.contiguous() for i, p in enumerate(ema.shadow_params)})
                    extra["ema.step"] = torch.tensor(ema.optimization_step)
                checkpoint.save(args.output_dir, step + 1, unwrapped, optimizer, args.checkpoints_total_limit, extra)
            accelerator.wait_for_everyone()

    accelerator.wait_for_everyone()
    seconds["train"] = time.perf_counter() - started - seconds["setup"]
    if setup.unet_term is not None:  # the UNet-aware term and a UNet-space inner attack
        costs["unet_evals_training"] = setup.unet_term.evaluations - costs.get("unet_evals_linearisation", 0)
    seconds["steps_per_second"] = (args.max_train_steps - start) / max(seconds["train"], 1e-9)
    if ema is not None:  # before the used rows go back into their tables: they are among the averaged parameters
        ema.copy_to(params)
    for enc in setup.encoders:
        merge_used_rows(unwrapped[enc.name])
    result = None
    if accelerator.is_main_process:
        result = write_outputs(args, setup, unwrapped, logs, seconds, costs, on_phase)
    accelerator.end_training()
    return result


def cli(argv=None):
    """Entry point shared by `python erase_diffusion/train.py` and `erase-diffusion erase`."""
    from erase_diffusion.cli import run_script

    def report(args, result):
        if result and result.get("summary"):
            print(result["summary"])

    return run_script(main, parse_args, argv, report)


if __name__ == "__main__":
    sys.exit(cli())
