"""Flags for the suite's short erasures of the miniature, which test the loop's mechanics, not the erasure's quality.

The default 192 forget and 384 retain renders cost ~5 of a short run's ~7 s of set-up (caching their features,
encoding the UNet terms' latents) on one core; an eighth of them runs every term the same way. Tests of what the
default data erases use erase's defaults instead (the shared `default_erasure`)."""

SMALL_DATA = ["--num_forget_images", "24", "--num_retain_images", "48"]
# the first-order set runs, on one gradient draw a caption (8 by default)
QUICK = ["--validation_seeds", "0", "--report_to", "none", "--checkpointing_steps", "0", "--linear_gradient_samples", "1",
         *SMALL_DATA]
# a few steps erasing the triangle: the levers' mechanics, recorded
TRIANGLE = ["--concept", "triangle", "--max_train_steps", "4", *QUICK]
