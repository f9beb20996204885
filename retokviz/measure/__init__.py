"""Measurements on a model with a method applied: accuracy and what was let go of (`metrics`), the papers'
analyses (`analysis`), masking and keep-rate robustness (`robustness`), bootstrap intervals (`intervals`) and MACs
(`macs`). Speed is measured by the sweep (`retokviz.sweep`)."""
