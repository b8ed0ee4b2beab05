from zoomcal.connectors.caldav.spec import SPEC

__all__ = ["SPEC"]
