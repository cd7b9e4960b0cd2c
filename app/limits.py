"""The bounds the studio enforces on what a browser may ask for (shared by its models and its interface)."""

MAX_IMAGES, MAX_STEPS, MAX_GUIDANCE, MAX_SIZE = 8, 100, 30.0, 1024
