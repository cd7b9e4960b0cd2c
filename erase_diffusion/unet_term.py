"""The UNet-aware term: through the frozen UNet, the erased encoder's conditioning of a forget caption must make the
UNet predict the noise the way the original encoder's conditioning of the anchored caption does, on noisy latents of
the concept's own images (ESD's target, with the anchor in place of negative guidance):

    L_UN = E_{x0 ~ forget images, t, ε} || ε_UNet(x_t, t, h_θ(c)) - ε_UNet(x_t, t, h_orig(c[concept → anchor])) ||²

Token-state terms ask the encoder to reproduce the anchor's states everywhere; this one asks only for what changes
the UNet's prediction, so it weighs each state by how much the UNet reads it. It costs two UNet evaluations per latent
and a backward pass through the UNet (counted in erasure.json's costs).

The same frozen UNet serves the adversarial term (adversarial.py): as the soft-prompt attacker's objective
(--adversarial_space unet, --unet_adversaries), as its outer step (--lambda_adversarial_unet, `prefix_loss`), as
the guard of two-object prompts while that step runs (--lambda_pair_guard, `pair_guard`), and, once before training,
as the first-order view the linear adversaries read (--lambda_adversarial_linear, `concept_gradients`).
"""

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel


def pixels(images, size):
    """PIL images -> (N, 3, height, width) in [-1, 1], as the VAE reads them; `size`: a side, or (width, height)."""
    import numpy as np

    size = size if isinstance(size, tuple) else (size, size)
    arr = np.stack([np.asarray(im.convert("RGB").resize(size), dtype=np.float32) for im in images])
    return torch.from_numpy(arr / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


LAYOUT_T = 600  # of 1000 DDPM steps: above it the noise still decides where each object goes, below it their detail
ENCODE_BATCH = 64  # images per VAE call; the guard's scenes are encoded in these very slices (`scene_latents`)


def encode_latents(vae, x):
    """The VAE's latents (its posterior means, scaled) of pixels `x`, ENCODE_BATCH at a time."""
    with torch.no_grad():
        means = [vae.encode(x[i:i + ENCODE_BATCH]).latent_dist.mean for i in range(0, len(x), ENCODE_BATCH)]
    return torch.cat(means) * vae.config.scaling_factor


class UNetTerm:
    """The frozen UNet, the forget images' latents and the anchored captions' original states. `pair_width`: how many
    times wider than one object a two-object scene is drawn (the miniature's: 2; real SD draws both in one frame).
    `pair_scenes`: {two-object forget caption's index: a drawing of its anchored twin}, read by the guard instead of
    pure noise."""

    def __init__(self, base, forget_images, anchor_states, batch_size, seed, pair_width=1, pair_scenes=None,
                 kept_images=None):
        self.unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet").eval().requires_grad_(False)
        vae = AutoencoderKL.from_pretrained(base, subfolder="vae").eval()
        self.scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
        size = self.unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
        self.latents = encode_latents(vae, pixels(forget_images, size))
        # what the first-order view contrasts the concept with (--linear_gradient_contrast)
        self.kept_latents = encode_latents(vae, pixels(kept_images, size)) if kept_images else None
        self.scene_rows, self.scene_pixels, self.scene_chunks = {}, None, {}
        if pair_scenes:  # encoded as the guard first reads them (`scene_latents`): a short run reads few of hundreds
            self.scene_rows = {k: row for row, k in enumerate(pair_scenes)}
            self.scene_pixels = pixels(list(pair_scenes.values()), (size * pair_width, size))
            self.vae = vae
        self.anchor_states = anchor_states
        self.batch_size = batch_size
        self.pair_width = pair_width
        self.generator = torch.Generator().manual_seed(seed)
        self.evaluations = 0

    def scene_latents(self, captions):
        """The latents of the drawings of two-object forget captions `captions` (indices). Each ENCODE_BATCH-row chunk
        of the scenes is encoded the first time one of its rows is read, as the very slice encoding them all at once
        would encode: the same latents, in whatever order a run (or its resumed twin) reads them."""
        rows = [self.scene_rows[int(i)] for i in captions]
        for c in sorted({r // ENCODE_BATCH for r in rows} - set(self.scene_chunks)):
            self.scene_chunks[c] = encode_latents(self.vae, self.scene_pixels[c * ENCODE_BATCH:(c + 1) * ENCODE_BATCH])
        return torch.stack([self.scene_chunks[r // ENCODE_BATCH][r % ENCODE_BATCH] for r in rows])

    def state_dict(self):
        """What a resumed run needs to draw the same latents, timesteps and noise as one never stopped."""
        return {"unet_term.generator": self.generator.get_state()}

    def load_state_dict(self, state):
        if "unet_term.generator" in state:  # checkpoints from before it was saved hold none
            self.generator.set_state(state["unet_term.generator"])

    def noisy(self, x0):
        """Clean latents `x0` noised at random timesteps: (x_t, t, noise)."""
        noise = torch.randn(x0.shape, generator=self.generator)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(x0),), generator=self.generator)
        return self.scheduler.add_noise(x0, noise, t), t, noise

    def noisy_concept(self, n, latents=None):
        """n random concept latents (or of `latents`), noised at random timesteps: (x_t, t, noise), as `noisy`."""
        latents = self.latents if latents is None else latents
        return self.noisy(latents[torch.randint(len(latents), (n,), generator=self.generator)])

    def match(self, x_t, t, states, target_states):
        """The UNet's prediction under `states` against its prediction under `target_states` (no gradient there)."""
        with torch.no_grad():
            target = self.unet(x_t, t, encoder_hidden_states=target_states).sample
        self.evaluations += 2 * len(x_t)
        return F.mse_loss(self.unet(x_t, t, encoder_hidden_states=states).sample, target)

    def denoising_objective(self, n):
        """states -> the UNet's denoising loss on n random concept latents conditioned on them (an attacker's goal:
        conditioning under which the UNet draws the concept)."""
        x_t, t, noise = self.noisy_concept(n)

        def objective(states):
            self.evaluations += n
            return F.mse_loss(self.unet(x_t, t, encoder_hidden_states=states).sample, noise)

        return objective

    def loss(self, idx, states):
        """L_UN on the forget images `idx` (their captions' states under the erased encoder: `states`)."""
        idx, states = idx[:self.batch_size], states[:self.batch_size]
        x_t, t, _ = self.noisy(self.latents[idx])
        return self.match(x_t, t, states, self.anchor_states[idx])

    def prefix_loss(self, states, target_states):
        """AdvUnlearn's outer step through the UNet: under the prefix adversaries' `states`, the UNet must predict on
        random concept latents what it predicts under the original's anchored caption behind a filler prefix."""
        x_t, t, _ = self.noisy_concept(len(states))
        return self.match(x_t, t, states, target_states)

    def concept_gradients(self, states, samples, pools=None, chunk=64):
        """Per caption, the gradient of the UNet's denoising loss on the concept's latents with respect to its states
        `states` (N, L, D), averaged over `samples` (latent, timestep, noise) draws: the first-order view of the UNet
        the linear adversaries read (adversarial.py). With kept images, the part along the same gradient on them is
        projected out, caption by caption: what lowers the loss on any object (a sharper, coloured shape) is no
        concept, and unlearning it costs the kept ones. `pools`: per caption, the (concept, kept) images' indices its
        draws come from (None: any), so that a caption naming red reads red images only. Costs N x samples UNet
        evaluations and backward passes (twice with kept images), once."""
        pools = pools or [(None, None)] * len(states)
        grad = self._gradients(states, samples, self.latents, [p[0] for p in pools], chunk)
        if self.kept_latents is None:
            return grad
        kept = self._gradients(states, samples, self.kept_latents, [p[1] for p in pools], chunk)
        along = (grad * kept).sum((1, 2), keepdim=True) / (kept * kept).sum((1, 2), keepdim=True).clamp(min=1e-12)
        return grad - along * kept

    def _gradients(self, states, samples, latents, pools, chunk):
        rows = states.repeat_interleave(samples, 0)
        picks = None
        if any(p is not None for p in pools):  # each caption's draws from its own pool
            pools = [torch.arange(len(latents)) if p is None else torch.as_tensor(p) for p in pools]
            picks = torch.cat([p[torch.randint(len(p), (samples,), generator=self.generator)] for p in pools])
        out = []
        for i in range(0, len(rows), chunk):
            s = rows[i:i + chunk].clone().requires_grad_(True)
            x_t, t, noise = self.noisy_concept(len(s), latents) if picks is None else self.noisy(
                latents[picks[i:i + chunk]])
            pred = self.unet(x_t, t, encoder_hidden_states=s).sample
            # summed over rows: each row's gradient is its own sample's
            loss = F.mse_loss(pred, noise, reduction="none").mean((1, 2, 3)).sum()
            out.append(torch.autograd.grad(loss, s)[0])
            self.evaluations += len(s)
        return torch.cat(out).view(len(states), samples, *states.shape[1:]).mean(1)

    def guards(self, caption):
        """Whether the guard can read two-object forget caption `caption` (an index): with drawn scenes, only those
        whose anchored twin names two objects the renderer draws (caption noise may drop one)."""
        return self.scene_pixels is None or caption in self.scene_rows

    def pair_guard(self, states, target_states, idx=None):
        """The two-object guard: under the erased encoder's `states` of two-object forget captions, the UNet must
        predict on pure noise what it predicts under the original's anchored captions (`target_states`), at the
        timesteps where a scene's layout is decided (>= LAYOUT_T), on latents as wide as the family draws two objects.
        Without it the outer step through the UNet swapped two-object layouts ("a red star and a yellow circle" drew
        the circle left; benchmarks/README.md, seventh round). With drawn scenes (`pair_scenes`) and the captions'
        indices `idx`, it reads their drawings instead, noised at every timestep: on pure noise the prediction hardly
        depends on the caption, and the default's two-object failures (a kept square drawn as a blob, two colours
        swapped) are decided below LAYOUT_T too (benchmarks/README.md, eighth round)."""
        if self.scene_pixels is not None and idx is not None:
            x_t, t, _ = self.noisy(self.scene_latents(idx))
            return self.match(x_t, t, states, target_states)
        c, h, w = self.latents.shape[1:]
        x_t = torch.randn((len(states), c, h, w * self.pair_width), generator=self.generator)
        t = torch.randint(LAYOUT_T, self.scheduler.config.num_train_timesteps, (len(states),), generator=self.generator)
        return self.match(x_t, t, states, target_states)
