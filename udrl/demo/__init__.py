"""What only the app uses: the models behind the UI, input validation and the annotation store."""
