from zoomcal.connectors.zoom_calendar.spec import SPEC

__all__ = ["SPEC"]
