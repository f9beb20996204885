"""Models to reduce: checkpoints written and read with a header of what made them (`checkpoints`), the project's
bundled trained models (`bundled`), pretrained timm weights where they can be had offline or online (`weights`),
and the local-coherence stem (`stem`)."""
