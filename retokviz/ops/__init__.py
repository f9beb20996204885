"""Pure token operations, shared by the methods: bipartite matching and size-weighted merging (`merging`), the
record of a regrouping step (`regroup`), and the class token's attention computed beside timm's fused kernel
(`class_attention`). Functions of tensors only: no model, no state."""
