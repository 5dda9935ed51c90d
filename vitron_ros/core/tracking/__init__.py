"""Tracking on live streams: SAM 2 with a bounded memory, per-object state, re-acquisition."""
