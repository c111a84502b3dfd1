"""Reports: read run directories, aggregate (never re-score) and render self-contained HTML."""
