"""What only the notebooks use: each notebook's first cell (`setup`, also `rv.notebook`), the lessons' figures
and experiments (`lessons`), and the training notebook's live view (`training`)."""
