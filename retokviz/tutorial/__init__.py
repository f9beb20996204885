"""What only the notebooks use: each notebook's first cell (`setup`, also `rv.notebook`), the lessons' figures
and experiments (`lessons`), the lesson widgets built from the explorer's parts (`widgets`, one module per notebook,
the training notebook's pausable run among them; ImagePiece's merge rounds read one by one for them in `rounds`),
and the training notebook's live plot and helpers (`training`)."""
