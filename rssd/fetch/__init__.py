"""Fetch layer: one source -> FetchResult (bounded HTTP GET, then parse off the loop). No SQL."""
