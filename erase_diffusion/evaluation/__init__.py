"""Evaluating an erasure: the independent judge, judged metrics, the evaluate command, its report, CLIP's own tasks,
what the erased model draws instead, and (attack_suite) the runner of the attacks in erase_diffusion.attacks."""
