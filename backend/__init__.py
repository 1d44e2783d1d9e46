"""prunescope's API server: REST, SSE, the dashboard's files, and the only writer of the database."""
