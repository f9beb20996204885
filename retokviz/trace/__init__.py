"""What happened to every original patch in every block: recorded during a forward pass (`record`: rv.record,
Trace, LayerRecord, Status) and read in one place (`read`: what was let go of, by block, on the object or not,
what re-scoring did), so every metric, figure, explorer panel and lesson gives the same answer."""
