from zoomcal.connectors.ics.spec import SPEC

__all__ = ["SPEC"]
