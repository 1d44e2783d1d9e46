"""Worker reports: the token-protected endpoints through which workers start, record and finish runs."""
