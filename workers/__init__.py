"""Worker processes: run the payment workflows and their activities; scale by adding more."""
