"""Pure token operations, shared by the methods: bipartite matching and size-weighted merging (`merging`), the
record of a regrouping step (`regroup`), the class token's attention computed beside timm's fused kernel
(`class_attention`), and the small helpers that keep them cheap: cached index tensors, casts skipped where nothing
changes (`tensors`). Functions of tensors only: no model, no state."""
