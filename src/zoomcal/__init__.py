"""zoomcal: two-way sync between Zoom meetings and calendars around one central store."""

__version__ = "0.1.0"
