"""Attacks that try to get an erased concept back, each judged on the images the erased pipeline then draws."""
